//! A one-agent process for multi-host tests: starts an agent with the chosen driver, joins its
//! seeds, and prints its view of the cluster as one JSON line every 100 ms until its standard
//! input closes. It re-joins its seeds every second while one of them is not a live member in
//! its view (unknown, failed or left) or while it sees any failed member. At start-up that
//! reaches the seeds that did not listen yet at the first join: a node content with the first
//! peer that answered forms a cluster with it apart from the seeds that come up later (two
//! rookery agents and two serf agents started at once stayed two clusters of two for good).
//! After a partition it merges the healed sides within a second or so, sooner than the
//! reconnect timer would (one failed member tried per `reconnect_interval`, 30 s).
//!
//! `rookery-test-node --driver tokio|async-std|mio --name NAME --bind IP:PORT [--seed IP:PORT]...
//! [--wire native|hashicorp|memberlist]` (the HashiCorp profiles run with `Config::local()`'s
//! timing, as `serf agent -profile=local` and memberlist's local configuration; native with
//! the tests' fast timing).
//!
//! With `ROOKERY_NODE_LOG=error|warn|info|debug|trace` set, the agent's `tracing` output goes
//! to standard error at that level, with wall-clock times (to line up with other logs).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rookery_core::{Config, MemberStatus, WireProfile};
use rookery_driver::{Options, ShutdownMode};
use rookery_tests::scenarios::{fast_config, Driver};

#[derive(Parser, Debug)]
struct Args {
    /// tokio, async-std or mio.
    #[arg(long)]
    driver: String,
    /// Member name.
    #[arg(long)]
    name: String,
    /// Address to bind (UDP and TCP).
    #[arg(long)]
    bind: SocketAddr,
    /// Seeds to join (this node's own address is skipped).
    #[arg(long)]
    seed: Vec<SocketAddr>,
    /// Wire profile: native, hashicorp (with Serf's layer) or memberlist (without).
    #[arg(long, default_value = "native")]
    wire: String,
}

fn main() {
    let args = Args::parse();
    if let Some(level) = std::env::var("ROOKERY_NODE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
    {
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let driver = Driver::parse(&args.driver).expect("driver: tokio, async-std or mio");
    let config = match args.wire.as_str() {
        "native" => fast_config(),
        "hashicorp" => Config {
            wire: WireProfile::HashiCorp,
            ..Config::local()
        },
        "memberlist" => Config {
            wire: WireProfile::Memberlist,
            ..Config::local()
        },
        other => panic!("--wire {other}: native, hashicorp or memberlist"),
    };
    // Events are not read: they are dropped (and counted) once the stream is full.
    let (agent, _events) = driver
        .start(&args.name, args.bind, config, Options::default())
        .expect("agent starts");
    let done = Arc::new(AtomicBool::new(false));
    {
        let done = done.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() {
                    break;
                }
            }
            done.store(true, Ordering::Relaxed);
        });
    }
    let seeds: Vec<SocketAddr> = args
        .seed
        .into_iter()
        .filter(|s| *s != agent.local_addr())
        .collect();
    let mut last_join = None::<Instant>;
    let mut out = std::io::stdout().lock();
    while !done.load(Ordering::Relaxed) {
        let members = agent.members().unwrap_or_default();
        let failed = members.iter().any(|m| m.status == MemberStatus::Failed);
        let seed_missing = seeds.iter().any(|s| {
            !members.iter().any(|m| {
                m.addr == *s && !matches!(m.status, MemberStatus::Failed | MemberStatus::Left)
            })
        });
        let due = last_join.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if (seed_missing || failed) && due && !seeds.is_empty() {
            last_join = Some(Instant::now());
            let _ = agent.join(&seeds);
        }
        let view: BTreeMap<String, String> = members
            .iter()
            .map(|m| (m.name.to_string(), format!("{:?}", m.status)))
            .collect();
        let line = serde_json::json!({ "name": args.name, "members": view });
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.shutdown(ShutdownMode::Now);
}
