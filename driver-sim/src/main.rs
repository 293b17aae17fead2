//! The scenario runner: `cargo run --release -p rookery-sim -- <scenario> [options]`, one JSON
//! object per line on stdout. `demo` prints a readable timeline instead; `replay FILE` runs a
//! saved swarm case again.

/// With the `mimalloc` feature: a faster allocator for the runner, at the cost of more
/// resident memory (see BENCHMARKS.md, "Scale").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rookery_core::Config;
use rookery_sim::scenario::{self, Options};
use rookery_sim::swarm::Case;
use rookery_sim::ReliableModel;
use serde_json::{json, Map, Value};

mod demo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// A small cluster told as a story: joins, a crash detected, the news spreading.
    Demo,
    /// Node i starts at i·10 ms and joins node 0 → t_converge_ms.
    Join,
    /// Converge, wait 10 s, crash the last node → t_first_detect_ms, t_all_detect_ms.
    Crash,
    /// Steady state under --loss for --duration (default 300 s) → false_failed, false_suspect.
    Lossy,
    /// Steady state for --duration (default 60 s) → bytes_per_node_s, packets_per_node_s.
    Steady,
    /// Node 0 fires a user event → t_event_all_ms (until every node has it).
    Event,
    /// Node 0 queries everyone, all answer → t_query_done_ms, responses.
    Query,
    /// --slow-nodes overloaded by up to --max-delay-ms for --duration (default 300 s)
    /// → false_failed_healthy, false_failed_slow.
    Slow,
    /// Split in two halves for --duration (default 30 s), heal → t_heal_converge_ms.
    Partition,
    /// Crash a node at --rate per second for --duration (default 120 s), each restarting
    /// after --downtime → false_failed, stale_views.
    Churn,
    /// Converge, crash every third node at once, restart them all --downtime later with fresh
    /// state → t_views_correct_ms, stale_views (after --duration, default 120 s).
    MassRestart,
    /// Converge, crash the last node, bring it back --downtime later (default 5 s) under its
    /// name at a new address → t_all_know_new_addr_ms, name_conflicts (after --duration,
    /// default 60 s).
    Moved,
    /// Converge, then every tenth member loses --loss (default 0.8) of its packets both ways
    /// for --duration (default 300 s) → degraded_flaps, degraded_failed_share, healthy_false_failed.
    Degraded,
    /// Converge, then the last node flaps (down --downtime, up --downtime; default 5 s) for
    /// --duration (default 120 s) → events_per_observer, bytes_per_node_s, stale_views.
    Flap,
    /// Run the swarm case saved in FILE again → passed, violations, trace_hash.
    Replay,
}

/// How the simulated network carries reliable messages (`--reliable`).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Reliable {
    /// Never lost, only delayed (three one-way latencies): the model of every recorded figure.
    Perfect,
    /// TCP under the datagrams' loss: lost segments cost retransmission timeouts (SYN 1 s,
    /// data 200 ms, doubling), a connection not up within `tcp_timeout` fails the send.
    Tcp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// `Config::lan()`: rookery's LAN profile (issue 18's timing).
    Lan,
    /// `Config::memberlist()`: memberlist's LAN profile exactly (the `lan` of every figure
    /// recorded before issue 18's timing).
    Memberlist,
    /// `Config::wan()`: memberlist's WAN profile.
    Wan,
    /// `Config::local()`: memberlist's Local profile.
    Local,
}

/// rookery's deterministic cluster simulator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Which scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// The swarm case to replay (for `replay`).
    #[arg(required_if_eq("scenario", "replay"))]
    file: Option<PathBuf>,
    /// Cluster size.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Seed of the run (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Datagram loss rate in the measured phase (lossy defaults to 0.1).
    #[arg(long)]
    loss: Option<f64>,
    /// Length of the measured phase in seconds (lossy, slow: 300; steady: 60; partition:
    /// 30; churn: 120).
    #[arg(long)]
    duration: Option<u64>,
    /// How reliable messages fare under loss (reported as `reliable`).
    #[arg(long, value_enum, default_value_t = Reliable::Perfect)]
    reliable: Reliable,
    /// Protocol preset.
    #[arg(long, value_enum, default_value_t = Preset::Lan)]
    config: Preset,
    /// Draw the fraction of nodes that know each fact (join, failure, leave) over time into
    /// this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// `slow`: how many nodes are overloaded.
    #[arg(long, default_value_t = 5)]
    slow_nodes: usize,
    /// `slow`: the longest extra delay of an overloaded node's input and timers, in ms.
    #[arg(long, default_value_t = 2000)]
    max_delay_ms: u64,
    /// `churn`: crashes per second.
    #[arg(long, default_value_t = 0.1)]
    rate: f64,
    /// `churn`, `mass-restart`: seconds a crashed node stays down before it restarts (default
    /// 20); `flap`: seconds down, then as many up (default 5).
    #[arg(long)]
    downtime: Option<u64>,
    /// `partition`: after healing, run the reconnect stand-in (every running node joins the
    /// members it sees failed) every SECS seconds, as Serf's reconnect timer would.
    #[arg(long, value_name = "SECS")]
    reconnect: Option<u64>,
    /// `join`: stop formation (and report how far it got) once resident memory passes this
    /// many MiB.
    #[arg(long, value_name = "MIB")]
    max_rss_mb: Option<f64>,
    /// `join`: milliseconds between two nodes' starts.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    join_every_ms: u64,
    /// Threads the simulation may use (the run, its trace hash included, is the same
    /// whatever the number; windows fall back to one thread while a node is overloaded).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `replay`: print every event (time, node, event) to stderr.
    #[arg(long)]
    events: bool,
    /// Give every node one AES-256 keyring (a fixed key), so every datagram and frame is
    /// sealed: the scenario's figures with encryption on (the config is reported as
    /// `<preset>+encrypt`).
    #[arg(long)]
    encrypt: bool,
    /// The wire profile every node speaks (the config is reported as `<preset>+hashicorp`
    /// or `<preset>+memberlist` for the HashiCorp profiles).
    #[arg(long, value_enum, default_value_t = Wire::Native)]
    wire: Wire,
    /// Turn on the accusation guard (`Config::accusation_guard`, off by default): a node
    /// withholds an accusation when its helpers stayed silent while others reached it (the
    /// config is reported as `<config>+guard`).
    #[arg(long)]
    accusation_guard: bool,
    /// Override one protocol setting of the preset, `KEY=VALUE` (repeatable; the config is
    /// reported with `+KEY=VALUE` appended). Keys: probe_interval_ms, probe_timeout_ms,
    /// indirect_checks, suspicion_mult, suspicion_max_timeout_mult, suspicion_confirmations,
    /// awareness_max_multiplier,
    /// gossip_interval_ms, gossip_nodes, retransmit_mult, push_pull_interval_s,
    /// accusation_guard (0/1), probe_suspects_first (0/1), join_follow_up (0/1),
    /// revival_check (0/1), suspicion_unit_ms.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Apply one `--set KEY=VALUE` override to `config`.
fn apply_setting(config: &mut Config, kv: &str) -> Result<(), String> {
    let (key, value) = kv
        .split_once('=')
        .ok_or_else(|| format!("--set {kv}: expected KEY=VALUE"))?;
    let num: u64 = value
        .parse()
        .map_err(|_| format!("--set {kv}: VALUE must be a non-negative integer"))?;
    let ms = Duration::from_millis(num);
    match key {
        "probe_interval_ms" => config.probe_interval = ms,
        "probe_timeout_ms" => config.probe_timeout = ms,
        "indirect_checks" => config.indirect_checks = num as usize,
        "suspicion_mult" => config.suspicion_mult = num as u32,
        "suspicion_max_timeout_mult" => config.suspicion_max_timeout_mult = num as u32,
        "suspicion_confirmations" => config.suspicion_confirmations = Some(num as u32),
        "awareness_max_multiplier" => config.awareness_max_multiplier = num as u32,
        "gossip_interval_ms" => config.gossip_interval = ms,
        "gossip_nodes" => config.gossip_nodes = num as usize,
        "retransmit_mult" => config.retransmit_mult = num as u32,
        "push_pull_interval_s" => config.push_pull_interval = Duration::from_secs(num),
        "accusation_guard" => config.accusation_guard = num != 0,
        "probe_suspects_first" => config.probe_suspects_first = num != 0,
        "join_follow_up" => config.join_follow_up = num != 0,
        "revival_check" => config.revival_check = num != 0,
        "suspicion_unit_ms" => config.suspicion_unit = Some(ms),
        _ => return Err(format!("--set {kv}: unknown key {key}")),
    }
    Ok(())
}

/// The wire profile of the simulated nodes (`--wire`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Wire {
    /// rookery's native format.
    Native,
    /// memberlist's and Serf's protocols as Go writes them.
    Hashicorp,
    /// memberlist's protocol alone, without Serf's layer (user events and queries refused).
    Memberlist,
}

fn replay(
    path: &std::path::Path,
    plot: Option<&PathBuf>,
    events: bool,
) -> Result<(Value, bool), String> {
    let case = Case::load(path).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut sim = case.build(plot.is_some()).map_err(|e| e.to_string())?;
    sim.set_record_events(events);
    let out = case.run_on(&mut sim);
    for (t, i, e) in sim.drain_events() {
        eprintln!("[{t}] node-{i}: {e:?}");
    }
    let mut m = Map::new();
    m.insert("scenario".into(), json!("replay"));
    m.insert("file".into(), json!(path.display().to_string()));
    m.insert("seed".into(), json!(case.seed));
    m.insert("nodes".into(), json!(case.nodes));
    m.insert("steps".into(), json!(case.script.len()));
    m.insert("wall_s".into(), json!(start.elapsed().as_secs_f64()));
    m.insert("passed".into(), json!(out.passed()));
    m.insert(
        "violations".into(),
        json!(out
            .violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()),
    );
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    m.insert("t_formed_ms".into(), json!(ms(out.formed_in)));
    m.insert("t_healed_ms".into(), json!(ms(out.healed_in)));
    m.insert("sim_s".into(), json!(out.end.as_millis() as f64 / 1e3));
    m.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", out.trace_hash)),
    );
    if let (Some(path), Some(k)) = (plot, sim.knowledge()) {
        let title = format!(
            "rookery-sim replay: {} nodes, seed {}",
            case.nodes, case.seed
        );
        std::fs::write(path, k.to_svg(&title, sim.len(), sim.now()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        m.insert("plot".into(), json!(path.display().to_string()));
    }
    Ok((Value::Object(m), out.passed()))
}

fn main() {
    let args = Args::parse();
    if args.scenario == Scenario::Replay {
        let file = args.file.as_ref().expect("clap requires FILE for replay");
        match replay(file, args.plot.as_ref(), args.events) {
            Ok((out, passed)) => {
                println!("{out}");
                std::process::exit(if passed { 0 } else { 1 });
            }
            Err(e) => {
                eprintln!("replay: {e}");
                std::process::exit(2);
            }
        }
    }
    let (config, config_name) = match args.config {
        Preset::Lan => (Config::lan(), "lan"),
        Preset::Memberlist => (Config::memberlist(), "memberlist"),
        Preset::Wan => (Config::wan(), "wan"),
        Preset::Local => (Config::local(), "local"),
    };
    let (config, config_name) = if args.encrypt {
        let ring = rookery_core::Keyring::new(&[0x42; 32]).expect("a 32-byte key");
        let name: &'static str = match config_name {
            "lan" => "lan+encrypt",
            "wan" => "wan+encrypt",
            "memberlist" => "memberlist+encrypt",
            _ => "local+encrypt",
        };
        (
            Config {
                keyring: Some(ring),
                ..config
            },
            name,
        )
    } else {
        (config, config_name)
    };
    let (config, config_name) = match args.wire {
        Wire::Native => (config, config_name.to_string()),
        Wire::Hashicorp => (
            Config {
                wire: rookery_core::WireProfile::HashiCorp,
                ..config
            },
            format!("{config_name}+hashicorp"),
        ),
        Wire::Memberlist => (
            Config {
                wire: rookery_core::WireProfile::Memberlist,
                ..config
            },
            format!("{config_name}+memberlist"),
        ),
    };
    let (config, config_name) = if args.accusation_guard {
        (
            Config {
                accusation_guard: true,
                ..config
            },
            format!("{config_name}+guard"),
        )
    } else {
        (config, config_name)
    };
    let (config, config_name) = {
        let (mut config, mut config_name) = (config, config_name);
        for kv in &args.set {
            if let Err(e) = apply_setting(&mut config, kv) {
                eprintln!("{e}");
                std::process::exit(2);
            }
            config_name.push('+');
            config_name.push_str(kv);
        }
        (config, config_name)
    };
    if args.nodes < 2 {
        eprintln!("--nodes must be at least 2");
        std::process::exit(2);
    }
    let default_loss = match args.scenario {
        Scenario::Lossy => 0.1,
        Scenario::Degraded => 0.8,
        _ => 0.0,
    };
    let loss = args.loss.unwrap_or(default_loss);
    if !(0.0..=1.0).contains(&loss) {
        eprintln!("--loss must be within 0..=1");
        std::process::exit(2);
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        eprintln!("--rate must be positive");
        std::process::exit(2);
    }
    let default_duration = match args.scenario {
        Scenario::Lossy | Scenario::Slow | Scenario::Degraded => 300,
        Scenario::Partition => 30,
        Scenario::Churn | Scenario::MassRestart | Scenario::Flap => 120,
        _ => 60,
    };
    let opts = Options {
        nodes: args.nodes,
        seed: args.seed,
        loss,
        duration: Duration::from_secs(args.duration.unwrap_or(default_duration)),
        config,
        plot: args.plot.clone(),
        slow_nodes: args.slow_nodes,
        max_delay: Duration::from_millis(args.max_delay_ms),
        rate: args.rate,
        downtime: Duration::from_secs(args.downtime.unwrap_or(match args.scenario {
            Scenario::Flap | Scenario::Moved => 5,
            _ => 20,
        })),
        reconnect: args.reconnect.map(Duration::from_secs),
        max_rss_mb: args.max_rss_mb,
        join_every: Duration::from_millis(args.join_every_ms.max(1)),
        threads: args.threads,
        reliable: match args.reliable {
            Reliable::Perfect => ReliableModel::Perfect,
            Reliable::Tcp => ReliableModel::Tcp,
        },
    };
    let (name, f): (&str, fn(&Options) -> _) = match args.scenario {
        Scenario::Demo => {
            demo::run(&opts);
            return;
        }
        Scenario::Replay => unreachable!("handled above"),
        Scenario::Join => ("join", scenario::join),
        Scenario::Crash => ("crash", scenario::crash),
        Scenario::Lossy => ("lossy", scenario::lossy),
        Scenario::Steady => ("steady", scenario::steady),
        Scenario::Event => ("event", scenario::event),
        Scenario::Query => ("query", scenario::query),
        Scenario::Slow => ("slow", scenario::slow),
        Scenario::Partition => ("partition", scenario::partition),
        Scenario::Churn => ("churn", scenario::churn),
        Scenario::MassRestart => ("mass-restart", scenario::mass_restart),
        Scenario::Flap => ("flap", scenario::flap),
        Scenario::Moved => ("moved", scenario::moved),
        Scenario::Degraded => ("degraded", scenario::degraded),
    };
    let out = scenario::run(name, &config_name, &opts, f);
    println!("{out}");
}
