//! Swarm cases: one seeded run of a fault script against a small cluster, judged by the
//! invariants and the liveness phase. The property tests in `tests/` generate and shrink
//! cases; a failing case is written to a file that `rookery-sim replay FILE` runs again,
//! byte for byte.

use std::path::Path;
use std::time::Duration;

use rookery_core::{Config, Timestamp};
use serde::{Deserialize, Serialize};

use crate::builder::SimBuilder;
use crate::invariant::Violation;
use crate::liveness::Liveness;
use crate::net::NetConfig;
use crate::script::{validate, TimedStep};
use crate::sim::{Sim, SimError};

/// A protocol configuration preset, by name (so it fits in a replay file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// [`Config::lan`].
    Lan,
    /// [`Config::wan`].
    Wan,
    /// [`Config::local`].
    #[default]
    Local,
}

impl Preset {
    /// The configuration.
    pub fn config(self) -> Config {
        match self {
            Preset::Lan => Config::lan(),
            Preset::Wan => Config::wan(),
            Preset::Local => Config::local(),
        }
    }
}

/// One swarm case: everything a run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The simulation seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Protocol configuration of every node.
    #[serde(default)]
    pub config: Preset,
    /// The network once the cluster has formed (the fault mix: latency distribution, loss,
    /// duplication, reordering). Formation runs on it without its loss.
    #[serde(default)]
    pub net: NetConfig,
    /// The fault script, times relative to the moment the cluster has formed.
    pub script: Vec<TimedStep>,
    /// Whether the liveness phase stands in for Serf's reconnect (see [`Liveness`]).
    #[serde(default = "yes")]
    pub reconnect: bool,
    /// Nodes the liveness phase leaves cut off at first ([`Sim::cut_off_and_converge`]): the
    /// rest must converge on them as failed, then they must rejoin. Empty: everything heals
    /// at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut_off: Vec<usize>,
}

fn yes() -> bool {
    true
}

/// How long formation may take before the case fails.
pub const FORMATION_LIMIT: Duration = Duration::from_secs(120);
/// How long the script keeps running after its last step, before healing.
pub const SETTLE_AFTER_SCRIPT: Duration = Duration::from_secs(1);

/// What a case run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The trace hash (same case, same hash).
    pub trace_hash: u64,
    /// How long formation took.
    pub formed_in: Option<Duration>,
    /// How long the liveness phase took to converge.
    pub healed_in: Option<Duration>,
    /// Every violation, liveness included, in order.
    pub violations: Vec<Violation>,
    /// Virtual time at the end.
    pub end: Timestamp,
}

impl Outcome {
    /// Whether nothing was violated.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The first violation as one line, or "passed".
    pub fn summary(&self) -> String {
        match self.violations.first() {
            Some(v) => v.to_string(),
            None => "passed".into(),
        }
    }
}

impl Case {
    /// The builder of this case's simulation — seed, nodes, configuration, and the network
    /// without its loss (formation runs without it) — once the script is found valid.
    pub fn builder(&self) -> Result<SimBuilder, SimError> {
        validate(&self.script, self.nodes)?;
        if let Some(&bad) = self.cut_off.iter().find(|&&i| i >= self.nodes) {
            return Err(SimError::NoSuchNode {
                index: bad,
                len: self.nodes,
            });
        }
        Ok(SimBuilder::new(self.seed)
            .net(NetConfig {
                loss: 0.0,
                ..self.net.clone()
            })
            .nodes(self.nodes, self.config.config()))
    }

    /// Build the simulation for this case (formation scheduled, invariants on).
    pub fn build(&self, knowledge: bool) -> Result<Sim, SimError> {
        self.builder()?
            .invariants(true)
            .knowledge(knowledge)
            .record_events(false)
            .build()
    }

    /// Run the case: form, run the script, heal, check liveness and every invariant.
    pub fn run(&self) -> Result<Outcome, SimError> {
        let mut sim = self.build(false)?;
        Ok(self.run_on(&mut sim))
    }

    /// After formation: switch the case's loss on, let nodes answer queries
    /// ([`Sim::set_answer_queries`]) and schedule the script from now. Returns when the
    /// script's last step falls.
    pub fn start_script(&self, sim: &mut Sim) -> Timestamp {
        sim.set_answer_queries(true);
        if self.net.loss > 0.0 {
            sim.set_loss(self.net.loss);
        }
        let start = sim.now();
        sim.schedule_script(start, &self.script)
            .expect("a script validated by Case::builder");
        let last = self.script.iter().map(|s| s.at_ms).max().unwrap_or(0);
        start + Duration::from_millis(last)
    }

    /// Run the case on a simulation from [`Case::build`] (to inspect it afterwards).
    pub fn run_on(&self, sim: &mut Sim) -> Outcome {
        let mut violations = Vec::new();
        let formed = sim.form(FORMATION_LIMIT).ok();
        if formed.is_none() {
            violations.push(Violation {
                invariant: "formation",
                at: sim.now(),
                node: None,
                detail: format!("the cluster did not form within {FORMATION_LIMIT:?}"),
            });
        }
        let mut healed = None;
        if formed.is_some() {
            let end = self.start_script(sim) + SETTLE_AFTER_SCRIPT;
            // Stop early once something broke: the failure is already known.
            sim.run_until_pred(end, |s, _| !s.violations().is_empty());
            if sim.violations().is_empty() {
                let opts = Liveness {
                    reconnect_every: self.reconnect.then(|| Duration::from_secs(30)),
                    bound: None,
                };
                let cut = if self.cut_off.is_empty() {
                    Ok(Duration::ZERO)
                } else {
                    sim.cut_off_and_converge(&opts, &self.cut_off)
                        .map(|(_, d)| d)
                };
                match cut.and_then(|c| sim.heal_and_converge(&opts).map(|d| c + d)) {
                    Ok(d) => healed = Some(d),
                    Err(v) => violations.push(v),
                }
                let _ = sim.finish_checks();
            }
        }
        let aimed = sim.net_stats().to_aim;
        if aimed > 0 {
            violations.push(Violation {
                invariant: "no-traffic-where-the-adversary-aims",
                at: sim.now(),
                node: None,
                detail: format!("{aimed} transmits went to the adversary's chosen address"),
            });
        }
        let mut all: Vec<Violation> = sim.violations().to_vec();
        all.extend(violations);
        Outcome {
            trace_hash: sim.trace_hash(),
            formed_in: formed,
            healed_in: healed,
            violations: all,
            end: sim.now(),
        }
    }

    /// Write the case as pretty JSON to `path` (creating its directory).
    pub fn save(&self, path: &Path) -> Result<(), SimError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SimError::Script(e.to_string()))?;
        }
        let json =
            serde_json::to_string_pretty(self).map_err(|e| SimError::Script(e.to_string()))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| SimError::Script(format!("{}: {e}", path.display())))
    }

    /// Read a case from a JSON file.
    pub fn load(path: &Path) -> Result<Case, SimError> {
        let s = std::fs::read_to_string(path)
            .map_err(|e| SimError::Script(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&s).map_err(|e| SimError::Script(format!("{}: {e}", path.display())))
    }

    /// The command that replays the case from `path`.
    pub fn replay_command(path: &Path) -> String {
        format!(
            "cargo run --release -p rookery-sim -- replay {}",
            path.display()
        )
    }
}
