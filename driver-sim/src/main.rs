//! The scenario runner: `cargo run --release -p rookery-sim -- <scenario> [options]`, one JSON
//! object per line on stdout. `demo` prints a readable timeline instead.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use rookery_core::Config;
use rookery_sim::scenario::{self, Options};

mod demo;

#[derive(Clone, Copy, Debug, ValueEnum)]
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
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    Lan,
    Wan,
    Local,
}

/// rookery's deterministic cluster simulator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Which scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Cluster size.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Seed of the run (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Datagram loss rate in the measured phase (lossy defaults to 0.1).
    #[arg(long)]
    loss: Option<f64>,
    /// Length of the measured phase in seconds (lossy: 300, steady: 60).
    #[arg(long)]
    duration: Option<u64>,
    /// Protocol preset.
    #[arg(long, value_enum, default_value_t = Preset::Lan)]
    config: Preset,
}

fn main() {
    let args = Args::parse();
    let (config, config_name) = match args.config {
        Preset::Lan => (Config::lan(), "lan"),
        Preset::Wan => (Config::wan(), "wan"),
        Preset::Local => (Config::local(), "local"),
    };
    if args.nodes < 2 {
        eprintln!("--nodes must be at least 2");
        std::process::exit(2);
    }
    let default_loss = if matches!(args.scenario, Scenario::Lossy) {
        0.1
    } else {
        0.0
    };
    let loss = args.loss.unwrap_or(default_loss);
    if !(0.0..=1.0).contains(&loss) {
        eprintln!("--loss must be within 0..=1");
        std::process::exit(2);
    }
    let default_duration = if matches!(args.scenario, Scenario::Lossy) {
        300
    } else {
        60
    };
    let opts = Options {
        nodes: args.nodes,
        seed: args.seed,
        loss,
        duration: Duration::from_secs(args.duration.unwrap_or(default_duration)),
        config,
    };
    let (name, f): (&str, fn(&Options) -> _) = match args.scenario {
        Scenario::Demo => {
            demo::run(&opts);
            return;
        }
        Scenario::Join => ("join", scenario::join),
        Scenario::Crash => ("crash", scenario::crash),
        Scenario::Lossy => ("lossy", scenario::lossy),
        Scenario::Steady => ("steady", scenario::steady),
        Scenario::Event => ("event", scenario::event),
        Scenario::Query => ("query", scenario::query),
    };
    let out = scenario::run(name, config_name, &opts, f);
    println!("{out}");
}
