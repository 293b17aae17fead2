//! [`SimBuilder`]: a cluster and its network in a few lines.

use std::time::Duration;

use rookery_core::{Config, Identity, Tags};

use crate::net::{Latency, NetConfig};
use crate::script::{ApiCall, Step};
use crate::sim::{node_addr, Sim, SimError};

/// Builds a [`Sim`]: the network, the nodes, how they join, what is checked and recorded.
///
/// Nodes are all started at time zero; node `i > 0` joins through the first
/// [`seeds`](SimBuilder::seeds) nodes at `i · stagger` (10 ms by default). Nodes are named
/// `node-0`, `node-1`, … unless named otherwise.
#[derive(Clone, Debug)]
pub struct SimBuilder {
    seed: u64,
    net: NetConfig,
    nodes: Vec<(Config, String, Tags)>,
    prefix: String,
    stagger: Duration,
    seeds: usize,
    join: bool,
    invariants: bool,
    knowledge: bool,
    record_events: bool,
    poll: Duration,
    threads: usize,
}

impl SimBuilder {
    /// A builder for a run seeded with `seed`; the default network (uniform 1–5 ms, no loss).
    pub fn new(seed: u64) -> SimBuilder {
        SimBuilder {
            seed,
            net: NetConfig::default(),
            nodes: Vec::new(),
            prefix: "node".into(),
            stagger: Duration::from_millis(10),
            seeds: 1,
            join: true,
            invariants: true,
            knowledge: false,
            record_events: true,
            poll: Duration::from_millis(10),
            threads: 1,
        }
    }

    /// The whole network configuration.
    pub fn net(mut self, net: NetConfig) -> SimBuilder {
        self.net = net;
        self
    }

    /// The latency distribution.
    pub fn latency(mut self, latency: Latency) -> SimBuilder {
        self.net.latency = latency;
        self
    }

    /// The datagram loss rate from the start.
    pub fn loss(mut self, p: f64) -> SimBuilder {
        self.net.loss = p;
        self
    }

    /// The probability that a datagram is duplicated.
    pub fn duplicate(mut self, p: f64) -> SimBuilder {
        self.net.duplicate = p;
        self
    }

    /// The probability that a datagram is held back by up to `window`.
    pub fn reorder(mut self, p: f64, window: Duration) -> SimBuilder {
        self.net.reorder = p;
        self.net.reorder_window = window;
        self
    }

    /// The prefix of generated node names (default `node`).
    pub fn name_prefix(mut self, prefix: &str) -> SimBuilder {
        self.prefix = prefix.into();
        self
    }

    /// Add `n` nodes with `config`, named `{prefix}-{index}`.
    pub fn nodes(mut self, n: usize, config: Config) -> SimBuilder {
        for _ in 0..n {
            let name = format!("{}-{}", self.prefix, self.nodes.len());
            self.nodes.push((config.clone(), name, Tags::new()));
        }
        self
    }

    /// Add one node with its own name, configuration and tags.
    pub fn node(mut self, name: &str, config: Config, tags: Tags) -> SimBuilder {
        self.nodes.push((config, name.into(), tags));
        self
    }

    /// Node `i` joins at `i · stagger` (default 10 ms).
    pub fn stagger(mut self, d: Duration) -> SimBuilder {
        self.stagger = d;
        self
    }

    /// Join through the first `k` nodes (default 1).
    pub fn seeds(mut self, k: usize) -> SimBuilder {
        self.seeds = k.max(1);
        self
    }

    /// Do not join: every node starts alone (script the joins yourself).
    pub fn no_join(mut self) -> SimBuilder {
        self.join = false;
        self
    }

    /// Check the standard invariants as the run goes (default on). They cost O(N) work per
    /// input (a scan of the node's view) and O(N²) memory: right for clusters up to a few
    /// hundred nodes; turn them off for scale runs.
    pub fn invariants(mut self, on: bool) -> SimBuilder {
        self.invariants = on;
        self
    }

    /// Record who learned what when, for plots (default off).
    pub fn knowledge(mut self, on: bool) -> SimBuilder {
        self.knowledge = on;
        self
    }

    /// Keep every event for [`Sim::drain_events`] (default on).
    pub fn record_events(mut self, on: bool) -> SimBuilder {
        self.record_events = on;
        self
    }

    /// How often [`Sim::wait_for`] checks its condition (default 10 ms).
    pub fn poll_interval(mut self, every: Duration) -> SimBuilder {
        self.poll = every;
        self
    }

    /// Threads the run may use ([`Sim::set_threads`]; default 1). The run is the same byte
    /// for byte whatever the number; windows are not used while invariants are on.
    pub fn threads(mut self, threads: usize) -> SimBuilder {
        self.threads = threads;
        self
    }

    /// Create the simulation: every node started, joins scheduled. Fails on a configuration
    /// or name the core rejects.
    pub fn build(self) -> Result<Sim, SimError> {
        let mut sim = Sim::new(self.seed, self.net);
        sim.set_record_events(self.record_events);
        sim.set_poll_interval(self.poll);
        sim.set_threads(self.threads);
        if self.invariants {
            sim.add_standard_invariants();
        }
        if self.knowledge {
            sim.enable_knowledge(self.nodes.len());
        }
        let n = self.nodes.len();
        for (i, (config, name, tags)) in self.nodes.into_iter().enumerate() {
            sim.try_add_node(config, Identity::new(name, node_addr(i)).with_tags(tags))?;
        }
        if self.join {
            let seeds: Vec<usize> = (0..self.seeds.min(n)).collect();
            for i in 1..n {
                let at = sim.now() + self.stagger * i as u32;
                let call = ApiCall::Join {
                    seeds: seeds.clone(),
                };
                sim.schedule_step(at, Step::Api { node: i, call });
            }
        }
        Ok(sim)
    }
}
