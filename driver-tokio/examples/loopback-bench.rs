//! Loopback benchmark: N tokio agents in one process on 127.0.0.1, the simulator's scenarios
//! on a real network stack, printing one JSON line with the simulator's metric names plus the
//! CPU the whole process spent per node.
//!
//! ```text
//! cargo run --release -p rookery-tokio --example loopback-bench -- join   --nodes 100
//! cargo run --release -p rookery-tokio --example loopback-bench -- crash  --nodes 100
//! cargo run --release -p rookery-tokio --example loopback-bench -- steady --nodes 100
//! ```
//!
//! - `join`: start node 0, then node i at i·10 ms joining node 0; `t_converge_ms` is the time
//!   from the last start until every node sees all N alive.
//! - `crash`: converge, settle 10 s, stop the last node without leaving; `t_first_detect_ms`
//!   and `t_all_detect_ms` run from the stop to the first and the last `MemberFailed`.
//! - `steady`: converge, settle 10 s, then measure what every node sends over `--duration`:
//!   `bytes_per_node_s` (datagram plus stream bytes) and `packets_per_node_s` (datagrams
//!   plus stream messages).
//!
//! `cpu_ms_per_node_s` is the process's user + system CPU time (from `/proc/self/stat`) over
//! the measured phase, divided by N and by the phase's length in seconds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rookery_tokio::{Agent, AgentHandle, Config, Event, Identity, Options, ShutdownMode};
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    Join,
    Crash,
    Steady,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    Lan,
    Wan,
    Local,
}

#[derive(Parser, Debug)]
#[command(about = "N rookery-tokio agents on loopback; prints one JSON line of metrics")]
struct Args {
    /// Which scenario to run.
    scenario: Scenario,
    /// Cluster size.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Protocol preset.
    #[arg(long, value_enum, default_value_t = Preset::Lan)]
    config: Preset,
    /// Length of the measured phase of `steady`, in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Give up waiting for convergence or detection after this many seconds.
    #[arg(long, default_value_t = 300)]
    limit: u64,
}

/// Process CPU time (user + system) so far.
fn cpu_time() -> Duration {
    // Fields 14 and 15 of /proc/self/stat, in clock ticks (USER_HZ, 100 on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `after` starts at field 3 (state), so utime (14) and stime (15) sit at 11 and 12.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

struct Cluster {
    agents: Vec<AgentHandle>,
    /// (agent index, time, event) of every MemberFailed seen.
    failed: Arc<Mutex<Vec<(usize, Instant, String)>>>,
}

impl Cluster {
    async fn alive_counts(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.agents.len());
        for a in &self.agents {
            out.push(a.stats().await.map_or(0, |s| s.alive));
        }
        out
    }

    /// Start node 0, then node i at i·10 ms joining node 0; wait until all see N alive.
    /// Returns the cluster and the time from the last start to convergence.
    async fn form(n: usize, config: &Config, limit: Duration) -> (Cluster, Option<Duration>) {
        let failed = Arc::new(Mutex::new(Vec::new()));
        let mut agents: Vec<AgentHandle> = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            tokio::time::sleep_until((start + Duration::from_millis(i as u64 * 10)).into()).await;
            let identity = Identity::new(format!("node-{i}"), "127.0.0.1:0".parse().unwrap());
            let (agent, mut events) = Agent::start(config.clone(), identity, Options::default())
                .await
                .expect("agent starts");
            let log = failed.clone();
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    if let Event::MemberFailed(m) = e {
                        log.lock()
                            .unwrap()
                            .push((i, Instant::now(), m.name.to_string()));
                    }
                }
            });
            if i > 0 {
                let seed = agents[0].local_addr();
                let a = agent.clone();
                tokio::spawn(async move {
                    if let Err(e) = a.join(&[seed]).await {
                        eprintln!("{} could not join: {e}", a.name());
                    }
                });
            }
            agents.push(agent);
        }
        let last_start = Instant::now();
        let cluster = Cluster { agents, failed };
        loop {
            if cluster.alive_counts().await.iter().all(|&c| c == n) {
                return (cluster, Some(last_start.elapsed()));
            }
            if last_start.elapsed() > limit {
                return (cluster, None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn traffic(&self) -> (u64, u64) {
        let mut bytes = 0;
        let mut packets = 0;
        for a in &self.agents {
            if let Ok(s) = a.stats().await {
                bytes += s.core.bytes_out + s.core.stream_bytes_out;
                packets += s.core.packets_out + s.core.streams_out;
            }
        }
        (bytes, packets)
    }

    async fn stop(self) {
        for a in &self.agents {
            a.shutdown(ShutdownMode::Now).await;
        }
    }
}

async fn run(args: &Args) -> Map<String, Value> {
    let n = args.nodes;
    let limit = Duration::from_secs(args.limit);
    let config = match args.config {
        Preset::Lan => Config::lan(),
        Preset::Wan => Config::wan(),
        Preset::Local => Config::local(),
    };
    let mut m = Map::new();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let (cluster, formed) = Cluster::form(n, &config, limit).await;
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    let per_node_s = |cpu: Duration, wall: Duration| {
        let v = cpu.as_secs_f64() * 1e3 / n as f64 / wall.as_secs_f64().max(1e-9);
        (v * 1000.0).round() / 1000.0
    };
    match args.scenario {
        Scenario::Join => {
            m.insert(
                "cpu_ms_per_node_s".into(),
                json!(per_node_s(cpu_time() - cpu0, t0.elapsed())),
            );
        }
        Scenario::Crash => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let victim = cluster.agents[n - 1].clone();
            let victim_name = victim.name().to_string();
            let cpu1 = cpu_time();
            let stopped = Instant::now();
            victim.shutdown(ShutdownMode::Now).await;
            let mut first = None;
            let mut all = None;
            let mut detected = 0;
            while stopped.elapsed() < limit {
                {
                    let log = cluster.failed.lock().unwrap();
                    let mut seen = HashSet::new();
                    for (i, t, name) in log.iter() {
                        if *name == victim_name && *t >= stopped && seen.insert(*i) {
                            first = Some(first.map_or(*t, |f: Instant| f.min(*t)));
                            if seen.len() == n - 1 {
                                all = Some(*t);
                            }
                        }
                    }
                    detected = seen.len();
                }
                if all.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let phase = stopped.elapsed();
            m.insert(
                "t_first_detect_ms".into(),
                json!(first.map(|t| ms(t - stopped))),
            );
            m.insert(
                "t_all_detect_ms".into(),
                json!(all.map(|t| ms(t - stopped))),
            );
            m.insert("detected_by".into(), json!(detected));
            m.insert(
                "cpu_ms_per_node_s".into(),
                json!(per_node_s(cpu_time() - cpu1, phase)),
            );
        }
        Scenario::Steady => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let duration = Duration::from_secs(args.duration);
            let (b0, p0) = cluster.traffic().await;
            let cpu1 = cpu_time();
            let start = Instant::now();
            tokio::time::sleep(duration).await;
            let cpu = cpu_time() - cpu1;
            let wall = start.elapsed();
            let (b1, p1) = cluster.traffic().await;
            let per = |x: u64| x as f64 / n as f64 / wall.as_secs_f64();
            m.insert("duration_s".into(), json!(args.duration));
            m.insert(
                "bytes_per_node_s".into(),
                json!((per(b1 - b0) * 10.0).round() / 10.0),
            );
            m.insert(
                "packets_per_node_s".into(),
                json!((per(p1 - p0) * 1000.0).round() / 1000.0),
            );
            m.insert("cpu_ms_per_node_s".into(), json!(per_node_s(cpu, wall)));
        }
    }
    cluster.stop().await;
    m
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    let metrics = rt.block_on(run(&args));
    let mut out = Map::new();
    out.insert(
        "scenario".into(),
        json!(format!("{:?}", args.scenario).to_lowercase()),
    );
    out.insert("nodes".into(), json!(args.nodes));
    out.insert(
        "config".into(),
        json!(format!("{:?}", args.config).to_lowercase()),
    );
    out.insert("driver".into(), json!("tokio"));
    out.insert(
        "wall_s".into(),
        json!((start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
    );
    out.extend(metrics);
    println!("{}", Value::Object(out));
}
