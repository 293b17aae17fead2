//! The drivers on a hostile network (issue 16, "Hostile network (drivers)"): caps that stop an
//! attacker without stopping the cluster's own members.
//!
//! - a join storm through one seed, with the default options (tokio);
//! - idle TCP connections and random datagrams against a running 3-node cluster: nobody is
//!   suspected, and memory and descriptors return to where they were (tokio and mio);
//! - slowloris connections dribbling a byte at a time cannot block a join (tokio and mio);
//! - a declared frame larger than the limit is refused before allocation, and counted.
//!
//! Several tests open thousands of descriptors: each one checks `RLIMIT_NOFILE`, raises the soft
//! limit with `prlimit` when it can, and is skipped with a loud message when it stays too low.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rookery_core::{Config, Identity};
use rookery_driver::{Options, ShutdownMode};

/// The heavy tests of this file run one at a time (they measure memory and descriptors of
/// the whole process, and share two cores).
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The soft `RLIMIT_NOFILE` of this process (from /proc/self/limits).
fn nofile() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Make sure this process may open `need` descriptors: raise the soft limit with `prlimit`
/// (up to the hard limit) if needed. False, with a loud message, when it cannot.
fn descriptors_for(test: &str, need: u64) -> bool {
    if nofile().is_some_and(|n| n >= need) {
        return true;
    }
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={need}:")])
        .status();
    if nofile().is_some_and(|n| n >= need) {
        return true;
    }
    eprintln!(
        "\n!!!! SKIPPED {test}: needs {need} open files, RLIMIT_NOFILE is {:?} and could not be \
         raised; run `ulimit -n {need}` first !!!!\n",
        nofile()
    );
    false
}

fn tokio_rt(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `n` tokio agents join through one seed at once, every agent with the default [`Options`]
/// and `Config::lan()`; every join succeeds and every agent sees all `n + 1` members alive.
/// Returns the time from the first join to full convergence.
fn join_storm(n: usize, limit: Duration) -> Option<Duration> {
    if !descriptors_for("join_storm", 8 * n as u64 + 512) {
        return None;
    }
    let rt = tokio_rt(2);
    let took = rt.block_on(async move {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let start = |name: String| {
            rookery_tokio::Agent::start(Config::lan(), Identity::new(name, any), Options::default())
        };
        let (seed, _seed_events) = start("storm-seed".into()).await.expect("seed starts");
        let mut agents = Vec::with_capacity(n);
        for i in 0..n {
            let (h, _events) = start(format!("storm-{i}")).await.expect("agent starts");
            agents.push(h);
        }
        let t0 = Instant::now();
        let mut joins = tokio::task::JoinSet::new();
        for a in &agents {
            let a = a.clone();
            let to = seed.local_addr();
            joins.spawn(async move { a.join(&[to]).await });
        }
        let mut failed = Vec::new();
        while let Some(r) = joins.join_next().await {
            if let Err(e) = r.expect("join task") {
                failed.push(e);
            }
        }
        let joined_in = t0.elapsed();
        let seed_stats = seed.stats().await.expect("stats");
        assert!(
            failed.is_empty(),
            "{} of {n} joins failed in {joined_in:?} (first: {:?}); seed driver stats {:?}",
            failed.len(),
            failed.first(),
            seed_stats.driver
        );
        // Every agent sees every member alive.
        let mut last = Vec::new();
        let converged = loop {
            let mut counts = Vec::with_capacity(n + 1);
            counts.push(seed.stats().await.map_or(0, |s| s.alive));
            for a in &agents {
                counts.push(a.stats().await.map_or(0, |s| s.alive));
            }
            if counts.iter().all(|&c| c == n + 1) {
                break Some(t0.elapsed());
            }
            last = counts;
            if t0.elapsed() > limit {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let seed_stats = seed.stats().await.expect("stats");
        let behind = last.iter().filter(|&&c| c != n + 1).count();
        eprintln!(
            "join storm: {n} joiners, joins answered in {joined_in:?}, converged: {converged:?}; \
             seed driver stats {:?}",
            seed_stats.driver
        );
        assert!(
            converged.is_some(),
            "{behind} of {} agents did not see all {} members alive within {limit:?} \
             (min {:?})",
            n + 1,
            n + 1,
            last.iter().min()
        );
        for a in agents.iter().chain([&seed]) {
            a.shutdown(ShutdownMode::Now).await;
        }
        converged
    });
    took
}

/// The case: 1,000 members join through one seed at once, with the default options:
/// the seed's inbound cap (idle connections held for reuse count against it) must refuse none
/// of them, and all converge. About 10 s of two cores.
#[test]
fn join_storm_1000_through_one_seed() {
    let _one = heavy();
    join_storm(1000, Duration::from_secs(40));
}
