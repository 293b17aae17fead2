//! The benchmark scenarios behind the runner (`cargo run --release -p rookery-sim -- <name>`):
//! cluster formation, crash detection, false verdicts under loss, steady-state traffic, slow
//! (overloaded) nodes, a partition and its healing, and churn. Each returns its metrics; the
//! runner prints them as one JSON object, with the process's peak memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rookery_core::{Config, Event, MemberStatus, Timestamp};
use serde_json::{json, Map, Value};

use crate::{NetConfig, ReliableModel, Sim};

/// Settings shared by every scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster size.
    pub nodes: usize,
    /// Seed of the whole run.
    pub seed: u64,
    /// Datagram loss rate during the measured phase.
    pub loss: f64,
    /// Length of the measured phase (lossy, steady, slow, churn; the split of `partition`).
    pub duration: Duration,
    /// Protocol configuration of every node.
    pub config: Config,
    /// Write the knowledge plot (who knew what when) here as SVG.
    pub plot: Option<PathBuf>,
    /// `slow`: how many nodes are overloaded.
    pub slow_nodes: usize,
    /// `slow`: the longest extra delay of an overloaded node's input and timers.
    pub max_delay: Duration,
    /// `churn`: crashes per second (each crashed node restarts after `downtime`).
    pub rate: f64,
    /// `churn`: how long a crashed node stays down.
    pub downtime: Duration,
    /// `join`: stop formation once resident memory passes this many MiB.
    pub max_rss_mb: Option<f64>,
    /// `join`: time between two nodes' starts ([`JOIN_EVERY`] by default, as in every other
    /// scenario's formation).
    pub join_every: Duration,
    /// `partition`: after healing, run the reconnect stand-in this often
    /// ([`crate::Liveness::reconnect_every`]); `None`: the core alone.
    pub reconnect: Option<Duration>,
    /// Threads the simulation may use ([`Sim::set_threads`]); the run is the same whatever
    /// the number.
    pub threads: usize,
    /// How the network carries reliable messages ([`NetConfig::reliable`]); default the
    /// perfect channel every recorded figure was measured on.
    pub reliable: ReliableModel,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 100,
            seed: 1,
            loss: 0.0,
            duration: Duration::from_secs(60),
            config: Config::lan(),
            plot: None,
            slow_nodes: 5,
            max_delay: Duration::from_millis(2000),
            rate: 0.1,
            downtime: Duration::from_secs(20),
            reconnect: None,
            max_rss_mb: None,
            join_every: JOIN_EVERY,
            threads: 1,
            reliable: ReliableModel::Perfect,
        }
    }
}

/// The scenarios' network: the default one at datagram loss `loss`, with `opts`'s reliable
/// channel.
pub fn net(opts: &Options, loss: f64) -> NetConfig {
    NetConfig {
        loss,
        reliable: opts.reliable,
        ..NetConfig::default()
    }
}

/// A simulation for a scenario: the seed and network of `opts`, the knowledge recorder on
/// when a plot is asked for.
pub fn new_sim(opts: &Options, net: NetConfig) -> Sim {
    let mut sim = Sim::new(opts.seed, net);
    sim.set_threads(opts.threads);
    if opts.plot.is_some() {
        sim.enable_knowledge(opts.nodes);
    }
    sim
}

/// Peak resident memory of this process in MiB (`VmHWM` of `/proc/self/status`), if known.
pub fn peak_rss_mb() -> Option<f64> {
    proc_status_mb("VmHWM:")
}

/// Resident memory of this process now, in MiB (`VmRSS`), if known.
pub fn rss_mb() -> Option<f64> {
    proc_status_mb("VmRSS:")
}

fn proc_status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Add the common closing metrics: `sim_s`, `trace_hash`, memory (`peak_rss_mb`,
/// `member_entries` — the (node, known member) pairs — and `bytes_per_member_entry`), and
/// write the plot if one was asked for (`plot`).
pub fn wrap_up(sim: &Sim, opts: &Options, scenario: &str, m: &mut Map<String, Value>) {
    m.insert("sim_s".into(), json!(sim.now().as_millis() as f64 / 1e3));
    m.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", sim.trace_hash())),
    );
    let entries: usize = (0..sim.len()).map(|i| sim.node(i).num_members()).sum();
    let rss = peak_rss_mb();
    m.insert(
        "peak_rss_mb".into(),
        json!(rss.map(|r| (r * 10.0).round() / 10.0)),
    );
    m.insert(
        "rss_end_mb".into(),
        json!(rss_mb().map(|r| (r * 10.0).round() / 10.0)),
    );
    m.insert("member_entries".into(), json!(entries));
    // Revival checks (`Config::revival_check`), every node together: alive messages of
    // members failed there that went unanswered, or were not checked (a wait or the cap).
    let (unanswered, deferred) = (0..sim.len())
        .map(|i| sim.node(i).stats())
        .fold((0, 0), |(u, d), s| {
            (u + s.revivals_unanswered, d + s.revivals_deferred)
        });
    m.insert("revivals_unanswered".into(), json!(unanswered));
    m.insert("revivals_deferred".into(), json!(deferred));
    if sim.threads() > 1 {
        let w = sim.window_stats();
        let s = |d: Duration| (d.as_secs_f64() * 1e3).round() / 1e3;
        m.insert(
            "windows".into(),
            json!({
                "threads": sim.threads(),
                "windows": w.windows,
                "shared": w.shared,
                "refused": w.refused,
                "taking_s": s(w.taking),
                "nodes_s": s(w.nodes),
                "replay_s": s(w.replay),
            }),
        );
    }
    m.insert(
        "bytes_per_member_entry".into(),
        json!(rss
            .filter(|_| entries > 0)
            .map(|r| (r * 1024.0 * 1024.0 / entries as f64 * 10.0).round() / 10.0)),
    );
    if let (Some(path), Some(k)) = (&opts.plot, sim.knowledge()) {
        let title = format!(
            "rookery-sim {scenario}: {} nodes, seed {}",
            opts.nodes, opts.seed
        );
        let svg = k.to_svg(&title, sim.len(), sim.now());
        match std::fs::write(path, svg) {
            Ok(()) => m.insert("plot".into(), json!(path.display().to_string())),
            Err(e) => m.insert(
                "plot_error".into(),
                json!(format!("{}: {e}", path.display())),
            ),
        };
    }
}

/// How long formation may take before a scenario gives up, in virtual time.
pub const FORMATION_LIMIT: Duration = Duration::from_secs(900);

/// Start node 0, then node i at i·10 ms joining node 0; run until every node sees all N alive.
/// Returns the time from the last start to convergence (None if it never converged).
pub fn form_cluster(sim: &mut Sim, n: usize, config: &Config) -> Option<Duration> {
    form_cluster_capped(sim, n, config, JOIN_EVERY, None).converged
}

/// Time between two nodes' starts in a formation: node i starts at i · 10 ms.
pub const JOIN_EVERY: Duration = Duration::from_millis(10);

/// How a capped formation ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Formation {
    /// Time from the last start to convergence, if it converged.
    pub converged: Option<Duration>,
    /// Nodes started.
    pub started: usize,
    /// Whether it stopped because resident memory passed the cap.
    pub hit_memory_cap: bool,
}

/// [`form_cluster`], stopping early (and saying so) once the process's resident memory
/// passes `max_rss_mb` — so a scale run ends with figures instead of exhausting the machine.
pub fn form_cluster_capped(
    sim: &mut Sim,
    n: usize,
    config: &Config,
    every: Duration,
    max_rss_mb: Option<f64>,
) -> Formation {
    let over = |cap: Option<f64>| cap.is_some_and(|c| rss_mb().is_some_and(|r| r > c));
    // Formation's events (a million join events at N=1000) are hashed into the trace but not
    // kept: nothing here reads them.
    let recording = sim.records_events();
    sim.set_record_events(false);
    sim.drain_events().for_each(drop);
    let mut f = Formation::default();
    for i in 0..n {
        sim.run_until(Timestamp::ZERO + every * i as u32);
        if over(max_rss_mb) {
            f.hit_memory_cap = true;
            sim.set_record_events(recording);
            return f;
        }
        let id = sim.add_node(config.clone(), &format!("node-{i}"));
        f.started += 1;
        if i > 0 {
            sim.join(id, &[0]);
        }
    }
    let last_start = sim.now();
    let end = last_start + FORMATION_LIMIT;
    // Run in slices, checking the memory cap between them (a slice boundary changes nothing:
    // the run stops at the same step).
    let slice = if max_rss_mb.is_some() {
        Duration::from_millis(100)
    } else {
        FORMATION_LIMIT
    };
    let mut capped = false;
    let ok = loop {
        let until = (sim.now() + slice).min(end);
        if sim.run_until_every(until, |node| node.alive_count() == n) {
            break true;
        }
        if until >= end {
            break false;
        }
        if over(max_rss_mb) {
            capped = true;
            break true;
        }
    };
    sim.set_record_events(recording);
    f.hit_memory_cap = capped;
    f.converged = (ok && !capped).then(|| sim.now().saturating_since(last_start));
    f
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `join`: formation time.
pub fn join(opts: &Options) -> Map<String, Value> {
    let mut sim = new_sim(opts, net(opts, 0.0));
    let f = form_cluster_capped(
        &mut sim,
        opts.nodes,
        &opts.config,
        opts.join_every,
        opts.max_rss_mb,
    );
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(f.converged.map(ms)));
    if let Some(cap) = opts.max_rss_mb {
        m.insert("max_rss_mb".into(), json!(cap));
        m.insert("hit_memory_cap".into(), json!(f.hit_memory_cap));
        m.insert("nodes_started".into(), json!(f.started));
    }
    wrap_up(&sim, opts, "join", &mut m);
    m
}

/// `crash`: converge, wait 10 s, crash the last node; time until the first and until every
/// other node marks it failed.
pub fn crash(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let mut sim = new_sim(opts, net(opts, 0.0));
    let formed = form_cluster(&mut sim, n, &opts.config);
    sim.run_for(Duration::from_secs(10));
    sim.drain_events().for_each(drop);
    let victim = n - 1;
    let victim_name = format!("node-{victim}");
    sim.crash(victim);
    let t0 = sim.now();
    let mut first: Option<Timestamp> = None;
    let mut seen = vec![false; n];
    let mut count = 0;
    let all = sim.run_until_pred(t0 + Duration::from_secs(600), |sim, _| {
        for (t, i, e) in sim.drain_events() {
            if let Event::MemberFailed(m) = &e {
                if *m.name == *victim_name && !seen[i] {
                    seen[i] = true;
                    count += 1;
                    first.get_or_insert(t);
                }
            }
        }
        count == n - 1
    });
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert(
        "t_first_detect_ms".into(),
        json!(first.map(|t| ms(t.saturating_since(t0)))),
    );
    m.insert(
        "t_all_detect_ms".into(),
        json!(all.then(|| ms(sim.now().saturating_since(t0)))),
    );
    m.insert("detected_by".into(), json!(count));
    wrap_up(&sim, opts, "crash", &mut m);
    m
}

/// Counts of wrong verdicts in a run where nobody crashed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FalseVerdicts {
    /// Failed verdicts (each observer, each member).
    pub failed: u64,
    /// Suspicions.
    pub suspect: u64,
}

/// Run `sim` for `d`, counting failed and suspect verdicts (all false: nobody crashes).
pub fn count_false_verdicts(sim: &mut Sim, d: Duration) -> FalseVerdicts {
    let mut v = FalseVerdicts::default();
    let deadline = sim.now() + d;
    sim.run_until_pred(deadline, |sim, _| {
        for (_, _, e) in sim.drain_events() {
            match e {
                Event::MemberFailed(_) => v.failed += 1,
                Event::MemberSuspected { .. } => v.suspect += 1,
                _ => {}
            }
        }
        false
    });
    for (_, _, e) in sim.drain_events() {
        match e {
            Event::MemberFailed(_) => v.failed += 1,
            Event::MemberSuspected { .. } => v.suspect += 1,
            _ => {}
        }
    }
    v
}

/// `lossy`: converge without loss, then run `duration` at the loss rate; nobody crashes.
pub fn lossy(opts: &Options) -> Map<String, Value> {
    let mut sim = new_sim(opts, net(opts, 0.0));
    let formed = form_cluster(&mut sim, opts.nodes, &opts.config);
    sim.set_net(net(opts, opts.loss));
    let (bytes0, net0) = (bytes_sent(&sim, opts.nodes), sim.net_stats().clone());
    let v = count_false_verdicts(&mut sim, opts.duration);
    let (bytes1, net1) = (bytes_sent(&sim, opts.nodes), sim.net_stats().clone());
    let per_node_s = (bytes1 - bytes0) as f64 / opts.nodes as f64 / opts.duration.as_secs_f64();
    let alive_everywhere = (0..opts.nodes).all(|i| {
        sim.node(i)
            .members()
            .iter()
            .all(|m| m.status != MemberStatus::Failed)
    });
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("duration_s".into(), json!(opts.duration.as_secs_f64()));
    m.insert("false_failed".into(), json!(v.failed));
    m.insert("false_suspect".into(), json!(v.suspect));
    m.insert("no_failed_at_end".into(), json!(alive_everywhere));
    m.insert("lost".into(), json!(sim.net_stats().lost));
    m.insert(
        "bytes_per_node_s".into(),
        json!((per_node_s * 10.0).round() / 10.0),
    );
    // The reliable channel in the measured phase.
    m.insert(
        "reliable_delivered".into(),
        json!(net1.reliable_delivered - net0.reliable_delivered),
    );
    m.insert(
        "reliable_failed".into(),
        json!(net1.reliable_failed - net0.reliable_failed),
    );
    m.insert(
        "reliable_retransmits".into(),
        json!(net1.reliable_retransmits - net0.reliable_retransmits),
    );
    wrap_up(&sim, opts, "lossy", &mut m);
    m
}

/// Bytes the first `n` nodes sent so far, datagrams and streams.
fn bytes_sent(sim: &Sim, n: usize) -> u64 {
    (0..n)
        .map(|i| {
            let s = sim.node(i).stats();
            s.bytes_out + s.stream_bytes_out
        })
        .sum()
}

/// `steady`: converge, settle 10 s, then measure traffic sent over `duration`.
pub fn steady(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let mut sim = new_sim(opts, net(opts, 0.0));
    sim.set_record_events(false);
    let started = Instant::now();
    let formed = form_cluster(&mut sim, n, &opts.config);
    let formation_wall = started.elapsed();
    sim.run_for(Duration::from_secs(10));
    let totals = |sim: &Sim| {
        (0..n).fold((0u64, 0u64), |(b, p), i| {
            let s = sim.node(i).stats();
            (
                b + s.bytes_out + s.stream_bytes_out,
                p + s.packets_out + s.streams_out,
            )
        })
    };
    let (b0, p0) = totals(&sim);
    let measured = Instant::now();
    sim.run_for(opts.duration);
    let steady_wall = measured.elapsed();
    let (b1, p1) = totals(&sim);
    let per = |x: u64| x as f64 / n as f64 / opts.duration.as_secs_f64();
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("duration_s".into(), json!(opts.duration.as_secs_f64()));
    // How fast the simulator runs a formed cluster at rest, against formation (wall time).
    m.insert(
        "formation_wall_s".into(),
        json!((formation_wall.as_secs_f64() * 1e3).round() / 1e3),
    );
    m.insert(
        "steady_x_real_time".into(),
        json!(
            (opts.duration.as_secs_f64() / steady_wall.as_secs_f64().max(1e-9) * 10.0).round()
                / 10.0
        ),
    );
    m.insert(
        "bytes_per_node_s".into(),
        json!((per(b1 - b0) * 10.0).round() / 10.0),
    );
    m.insert(
        "packets_per_node_s".into(),
        json!((per(p1 - p0) * 1000.0).round() / 1000.0),
    );
    wrap_up(&sim, opts, "steady", &mut m);
    m
}

/// `mass-restart`: converge, crash every third node at once, and `downtime` later restart them
/// all at once with fresh state (incarnations and clocks start over, as after a data-centre
/// power cycle), each rejoining through three survivors. Memberlist issue 311 reports members
/// stuck dead after such restarts; here: `t_views_correct_ms`, from the restart until every
/// live node's view is right again (every live member seen alive, no crashed one seen alive),
/// and `stale_views`, the wrong view entries left after `duration` (0 when none stayed stuck).
/// `failed_verdicts_after_restart` counts failed verdicts emitted after the restart about
/// restarted members (late verdicts about their previous lives included).
pub fn mass_restart(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let (mut sim, formed) = formed(opts);
    let third: Vec<usize> = (0..n).filter(|i| i % 3 == 2).collect();
    let seeds: Vec<usize> = (0..n).filter(|i| i % 3 != 2).take(3).collect();
    for &i in &third {
        sim.crash(i);
    }
    sim.run_for(opts.downtime);
    sim.drain_events().for_each(drop);
    let t0 = sim.now();
    for &i in &third {
        let _ = sim.restart(i, &seeds);
    }
    let names: std::collections::HashSet<String> =
        third.iter().map(|&i| sim.name(i).to_string()).collect();
    let end = t0 + opts.duration;
    let mut correct = None;
    let mut failed_after = 0usize;
    while sim.now() < end {
        let next = (sim.now() + Duration::from_millis(100)).min(end);
        sim.run_until(next);
        failed_after += sim
            .drain_events()
            .filter(|(_, _, e)| matches!(e, Event::MemberFailed(m) if names.contains(&*m.name)))
            .count();
        if correct.is_none() && sim.stale_views() == 0 {
            correct = Some(sim.now().saturating_since(t0));
        }
    }
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("restarted".into(), json!(third.len()));
    m.insert("downtime_s".into(), json!(opts.downtime.as_secs_f64()));
    m.insert("t_views_correct_ms".into(), json!(correct.map(ms)));
    m.insert("stale_views".into(), json!(sim.stale_views()));
    m.insert("failed_verdicts_after_restart".into(), json!(failed_after));
    wrap_up(&sim, opts, "mass-restart", &mut m);
    m
}

/// `moved`: converge, then the last node crashes and, `downtime` later, comes back under the
/// same name at a new address (a container rescheduled with a new IP), rejoining through three
/// others. `t_all_know_new_addr_ms`: from the restart until every other node holds the member
/// alive at its new address; `name_conflicts` (events) and `gave_up_name` (the restarted node
/// went inert) should be 0 and false: the member keeps its name.
pub fn moved(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let (mut sim, formed) = formed(opts);
    let mover = n - 1;
    let seeds: Vec<usize> = (0..3.min(n - 1)).collect();
    let name = sim.name(mover).to_string();
    sim.crash(mover);
    sim.run_for(opts.downtime);
    sim.drain_events().for_each(drop);
    let t0 = sim.now();
    let new = sim.restart_moved(mover, &seeds).ok();
    let end = t0 + opts.duration;
    let mut known = None;
    let mut conflicts = 0usize;
    while sim.now() < end {
        let next = (sim.now() + Duration::from_millis(10)).min(end);
        sim.run_until(next);
        conflicts += sim
            .drain_events()
            .filter(|(_, _, e)| matches!(e, Event::NameConflict { .. }))
            .count();
        if known.is_none()
            && (0..n - 1).all(|o| {
                sim.node(o)
                    .member(&name)
                    .is_some_and(|m| Some(m.addr) == new && m.status == MemberStatus::Alive)
            })
        {
            known = Some(sim.now().saturating_since(t0));
        }
    }
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("downtime_s".into(), json!(opts.downtime.as_secs_f64()));
    m.insert("t_all_know_new_addr_ms".into(), json!(known.map(ms)));
    m.insert("name_conflicts".into(), json!(conflicts));
    m.insert("gave_up_name".into(), json!(sim.node(mover).has_left()));
    m.insert("stale_views".into(), json!(sim.stale_views()));
    wrap_up(&sim, opts, "moved", &mut m);
    m
}

/// `degraded`: converge, then every tenth member loses `loss` (0.8 by default) of what it sends
/// and receives, for `duration`. Rapid's paper shows memberlist never cleanly removing such
/// members (they flap). Reports, about the degraded members: `degraded_failed_verdicts` and
/// `degraded_rejoins` (failed, then back: a flap), and `degraded_failed_share_first`/`_last`,
/// the share of (observer, degraded member) pairs held failed, sampled every 10 s over the
/// first and the last third (stable means the two agree and the last third does not swing:
/// `degraded_failed_share_last_min`/`_max`); about the healthy ones: `healthy_false_failed`
/// and `healthy_false_suspect`.
pub fn degraded(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let (mut sim, formed) = formed(opts);
    let bad: Vec<usize> = (0..n).filter(|i| i % 10 == 9).collect();
    let all: Vec<usize> = (0..n).collect();
    sim.add_link_rule(&bad, &all, crate::LinkEffect::lossy(opts.loss));
    sim.add_link_rule(&all, &bad, crate::LinkEffect::lossy(opts.loss));
    let names: std::collections::HashSet<String> =
        bad.iter().map(|&i| sim.name(i).to_string()).collect();
    let healthy: Vec<usize> = (0..n).filter(|i| i % 10 != 9).collect();
    let share = |sim: &Sim| -> f64 {
        let mut failed = 0usize;
        for &o in &healthy {
            for &b in &bad {
                let st = sim.node(o).member(sim.name(b)).map(|m| m.status);
                failed += usize::from(!matches!(
                    st,
                    Some(MemberStatus::Alive | MemberStatus::Suspect)
                ));
            }
        }
        failed as f64 / (healthy.len() * bad.len()).max(1) as f64
    };
    let (mut bad_failed, mut rejoins, mut h_failed, mut h_suspect) = (0u64, 0u64, 0u64, 0u64);
    let mut samples = Vec::new();
    let end = sim.now() + opts.duration;
    while sim.now() < end {
        let next = (sim.now() + Duration::from_secs(10)).min(end);
        sim.run_until(next);
        for (_, o, e) in sim.drain_events() {
            if bad.contains(&o) {
                continue;
            }
            match &e {
                Event::MemberFailed(m) if names.contains(&*m.name) => bad_failed += 1,
                Event::MemberJoined(m) if names.contains(&*m.name) => rejoins += 1,
                Event::MemberFailed(_) => h_failed += 1,
                Event::MemberSuspected { member, .. } if !names.contains(&*member.name) => {
                    h_suspect += 1
                }
                _ => {}
            }
        }
        samples.push(share(&sim));
    }
    let third = (samples.len() / 3).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let last = &samples[samples.len().saturating_sub(third)..];
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("degraded".into(), json!(bad.len()));
    m.insert("degraded_failed_verdicts".into(), json!(bad_failed));
    m.insert("degraded_rejoins".into(), json!(rejoins));
    m.insert(
        "degraded_failed_share_first".into(),
        json!(round(mean(&samples[..third.min(samples.len())]))),
    );
    m.insert(
        "degraded_failed_share_last".into(),
        json!(round(mean(last))),
    );
    m.insert(
        "degraded_failed_share_last_min".into(),
        json!(round(last.iter().cloned().fold(f64::INFINITY, f64::min))),
    );
    m.insert(
        "degraded_failed_share_last_max".into(),
        json!(round(last.iter().cloned().fold(0.0, f64::max))),
    );
    m.insert("healthy_false_failed".into(), json!(h_failed));
    m.insert("healthy_false_suspect".into(), json!(h_suspect));
    wrap_up(&sim, opts, "degraded", &mut m);
    m
}

/// `flap`: converge, measure the traffic at rest for 30 s, then for `duration` let the last
/// node flap — down `downtime`, up `downtime`, over and over (a crash, then a restart with
/// fresh state through three other nodes) — then keep it up and let the cluster settle 60 s.
/// Bounded events and traffic are the goal: `events_per_observer` (membership events about the
/// flapper per other node, and `_per_cycle`), `bytes_per_node_s` during the flapping against
/// `bytes_per_node_s_at_rest`, and `stale_views` after the settle.
pub fn flap(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let (mut sim, formed) = formed(opts);
    let flapper = n - 1;
    let seeds: Vec<usize> = (0..3.min(n - 1)).collect();
    let name = sim.name(flapper).to_string();
    let bytes = |sim: &Sim| -> u64 {
        (0..n - 1)
            .map(|i| {
                let s = sim.node(i).stats();
                s.bytes_out + s.stream_bytes_out
            })
            .sum()
    };
    let rest = Duration::from_secs(30);
    let b0 = bytes(&sim);
    sim.run_for(rest);
    let b1 = bytes(&sim);
    sim.drain_events().for_each(drop);
    let per_s = |b: u64, d: Duration| b as f64 / (n - 1) as f64 / d.as_secs_f64();
    let half = opts.downtime.max(Duration::from_millis(100));
    let end = sim.now() + opts.duration;
    let mut cycles = 0u64;
    let mut events = 0usize;
    while sim.now() + half * 2 <= end {
        sim.crash(flapper);
        sim.run_for(half);
        let _ = sim.restart(flapper, &seeds);
        sim.run_for(half);
        cycles += 1;
        events += sim
            .drain_events()
            .filter(|(_, i, e)| {
                *i != flapper
                    && matches!(e.class(), rookery_core::EventClass::Membership(ms)
                        if ms.iter().any(|m| *m.name == *name))
            })
            .count();
    }
    let b2 = bytes(&sim);
    sim.run_for(Duration::from_secs(60));
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("half_period_s".into(), json!(half.as_secs_f64()));
    m.insert("cycles".into(), json!(cycles));
    let per_observer = events as f64 / (n - 1) as f64;
    m.insert(
        "events_per_observer".into(),
        json!((per_observer * 10.0).round() / 10.0),
    );
    m.insert(
        "events_per_observer_per_cycle".into(),
        json!((per_observer / cycles.max(1) as f64 * 100.0).round() / 100.0),
    );
    m.insert(
        "bytes_per_node_s_at_rest".into(),
        json!((per_s(b1 - b0, rest) * 10.0).round() / 10.0),
    );
    m.insert(
        "bytes_per_node_s".into(),
        json!((per_s(b2 - b1, half * 2 * cycles.max(1) as u32) * 10.0).round() / 10.0),
    );
    m.insert("stale_views".into(), json!(sim.stale_views()));
    wrap_up(&sim, opts, "flap", &mut m);
    m
}

/// Converge, settle 10 s, and drop the events so far.
fn formed(opts: &Options) -> (Sim, Option<Duration>) {
    let mut sim = new_sim(opts, net(opts, 0.0));
    let t = form_cluster(&mut sim, opts.nodes, &opts.config);
    sim.run_for(Duration::from_secs(10));
    sim.drain_events().for_each(drop);
    (sim, t)
}

/// `k` distinct node indices below `n`, drawn from the simulation's RNG, sorted.
fn pick(sim: &mut Sim, n: usize, k: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..n).collect();
    let mut out = Vec::new();
    for _ in 0..k.min(n) {
        let j = sim.random_range(0..pool.len() as u64) as usize;
        out.push(pool.swap_remove(j));
    }
    out.sort_unstable();
    out
}

/// `slow`: converge, then overload `slow_nodes` random nodes (every input and timer late by
/// up to `max_delay`) for `duration`; nobody crashes. Counts failed and suspect verdicts
/// about healthy and about slow members.
pub fn slow(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let (mut sim, formed) = formed(opts);
    let slow = pick(&mut sim, n, opts.slow_nodes);
    let mut is_slow = vec![false; n];
    for &i in &slow {
        is_slow[i] = true;
        sim.set_overload(i, Some(opts.max_delay));
    }
    // [failed, suspect] × [healthy, slow]
    let mut counts = [[0u64; 2]; 2];
    let deadline = sim.now() + opts.duration;
    let mut tally = |sim: &mut Sim| {
        let events: Vec<Event> = sim.drain_events().map(|(_, _, e)| e).collect();
        for e in events {
            let (kind, m) = match &e {
                Event::MemberFailed(m) => (0, m),
                Event::MemberSuspected { member, .. } => (1, member),
                _ => continue,
            };
            if let Some(x) = sim.index_of(&m.name) {
                counts[kind][usize::from(is_slow[x])] += 1;
            }
        }
    };
    sim.run_until_pred(deadline, |sim, _| {
        tally(sim);
        false
    });
    tally(&mut sim);
    let failed_at_end = (0..n)
        .map(|i| {
            sim.node(i)
                .members()
                .iter()
                .filter(|m| m.status == MemberStatus::Failed)
                .count()
        })
        .sum::<usize>();
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("duration_s".into(), json!(opts.duration.as_secs_f64()));
    m.insert("slow_nodes".into(), json!(slow.len()));
    m.insert("max_delay_ms".into(), json!(ms(opts.max_delay)));
    m.insert("false_failed_healthy".into(), json!(counts[0][0]));
    m.insert("false_failed_slow".into(), json!(counts[0][1]));
    m.insert("false_suspect_healthy".into(), json!(counts[1][0]));
    m.insert("false_suspect_slow".into(), json!(counts[1][1]));
    m.insert("failed_at_end".into(), json!(failed_at_end));
    wrap_up(&sim, opts, "slow", &mut m);
    m
}

/// How long `partition` waits for the healed cluster to converge.
pub const HEAL_LIMIT: Duration = Duration::from_secs(600);

/// `partition`: converge, split the cluster into two halves (nodes below N/2 and the rest)
/// for `duration`, heal, and time until every node sees every node alive again
/// (`t_heal_converge_ms`; null if not within 600 s, with the `stale_views` left). Also:
/// when every node saw only its own half alive (`t_split_detect_ms`), and the failed
/// verdicts during the split. The halves find each other again through the core's own
/// reconnect attempts (Serf's: every `reconnect_interval`, a push-pull with a failed member);
/// `reconnect` adds the simulator's stand-in ([`crate::Liveness`]) on top.
pub fn partition(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let (mut sim, formed) = formed(opts);
    let a: Vec<usize> = (0..n / 2).collect();
    let b: Vec<usize> = (n / 2..n).collect();
    let split = sim.partition(&[&a, &b]);
    let t0 = sim.now();
    let end = t0 + opts.duration;
    let half = |i: usize| if i < n / 2 { n / 2 } else { n - n / 2 };
    let mut detected = None;
    let mut verdicts = 0;
    while sim.now() < end {
        let next = (sim.now() + Duration::from_millis(10)).min(end);
        sim.run_until(next);
        verdicts += sim
            .drain_events()
            .filter(|(_, _, e)| matches!(e, Event::MemberFailed(_)))
            .count();
        if detected.is_none() && (0..n).all(|i| sim.node(i).alive_count() == half(i)) {
            detected = Some(sim.now().saturating_since(t0));
        }
    }
    sim.set_record_events(false);
    sim.heal(split);
    let healed = sim
        .heal_and_converge(&crate::Liveness {
            reconnect_every: opts.reconnect,
            bound: Some(HEAL_LIMIT),
        })
        .ok();
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("partition_s".into(), json!(opts.duration.as_secs_f64()));
    m.insert("t_split_detect_ms".into(), json!(detected.map(ms)));
    m.insert("failed_verdicts".into(), json!(verdicts));
    m.insert("t_heal_converge_ms".into(), json!(healed.map(ms)));
    m.insert(
        "reconnect_s".into(),
        json!(opts.reconnect.map(|d| d.as_secs_f64())),
    );
    if healed.is_none() {
        m.insert("stale_views".into(), json!(sim.stale_views()));
    }
    wrap_up(&sim, opts, "partition", &mut m);
    m
}

/// How long `churn` lets the cluster settle after the last crash before the final count.
pub const CHURN_SETTLE: Duration = Duration::from_secs(60);

/// `churn`: converge, then for `duration` crash a random running node at Poisson rate
/// `rate` per second (never more than half the cluster down); each comes back `downtime`
/// later (same name and address, fresh state) and rejoins through three running nodes.
/// `false_failed` counts failed verdicts about a member's current life while it runs;
/// `stale_views` is the number of wrong (live observer, member) view entries 60 s after the
/// last restart (`stale_views_mean`/`_max`: sampled every 10 s during the churn).
pub fn churn(opts: &Options) -> Map<String, Value> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let n = opts.nodes;
    let (mut sim, formed) = formed(opts);
    let rate = opts.rate.max(1e-9);
    let exp = |sim: &mut Sim| {
        let u = sim.random_f64();
        Duration::from_secs_f64((-(1.0 - u).ln() / rate).min(1e6))
    };
    let t0 = sim.now();
    let end = t0 + opts.duration;
    let mut next_crash = t0 + exp(&mut sim);
    let mut restarts: BinaryHeap<Reverse<(Timestamp, usize)>> = BinaryHeap::new();
    let mut down = vec![false; n];
    // The incarnation a node had when it last crashed: verdicts at or below it are about
    // that old life.
    let mut floor: Vec<Option<u32>> = vec![None; n];
    let (mut false_failed, mut true_failed, mut crashes, mut restarted) = (0u64, 0u64, 0u64, 0u64);
    let mut samples: Vec<usize> = Vec::new();
    let mut next_sample = t0 + Duration::from_secs(10);
    let classify =
        |sim: &mut Sim, down: &[bool], floor: &[Option<u32>], ff: &mut u64, tf: &mut u64| {
            let events: Vec<Event> = sim.drain_events().map(|(_, _, e)| e).collect();
            for e in events {
                if let Event::MemberFailed(m) = e {
                    if let Some(x) = sim.index_of(&m.name) {
                        if down[x] || floor[x].is_some_and(|f| m.incarnation <= f) {
                            *tf += 1;
                        } else {
                            *ff += 1;
                        }
                    }
                }
            }
        };
    loop {
        let next_restart = restarts.peek().map(|Reverse((t, _))| *t);
        let crash_due = (next_crash < end).then_some(next_crash);
        let sample_due = (next_sample <= end).then_some(next_sample);
        let Some(next) = [crash_due, next_restart, sample_due]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        sim.run_until_pred(next, |sim, _| {
            classify(sim, &down, &floor, &mut false_failed, &mut true_failed);
            false
        });
        classify(&mut sim, &down, &floor, &mut false_failed, &mut true_failed);
        if Some(next) == crash_due {
            let up: Vec<usize> = (0..n).filter(|&i| !down[i]).collect();
            if up.len() > n / 2 + 1 {
                let i = up[sim.random_range(0..up.len() as u64) as usize];
                floor[i] = Some(sim.node(i).local_member().incarnation);
                sim.crash(i);
                down[i] = true;
                crashes += 1;
                restarts.push(Reverse((sim.now() + opts.downtime, i)));
            }
            next_crash = next_crash + exp(&mut sim);
        }
        while let Some(&Reverse((t, i))) = restarts.peek() {
            if t > sim.now() {
                break;
            }
            restarts.pop();
            let up: Vec<usize> = (0..n).filter(|&j| !down[j]).collect();
            let seeds = pick(&mut sim, up.len(), 3);
            let seeds: Vec<usize> = seeds.into_iter().map(|k| up[k]).collect();
            let _ = sim.restart(i, &seeds);
            down[i] = false;
            restarted += 1;
        }
        if Some(next) == sample_due {
            samples.push(sim.stale_views());
            next_sample = next_sample + Duration::from_secs(10);
        }
    }
    let stop = sim.now();
    let settle_end = stop + CHURN_SETTLE;
    sim.run_until_pred(settle_end, |sim, _| {
        classify(sim, &down, &floor, &mut false_failed, &mut true_failed);
        false
    });
    classify(&mut sim, &down, &floor, &mut false_failed, &mut true_failed);
    let stale = sim.stale_views();
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("duration_s".into(), json!(opts.duration.as_secs_f64()));
    m.insert("rate_per_s".into(), json!(opts.rate));
    m.insert("downtime_s".into(), json!(opts.downtime.as_secs_f64()));
    m.insert("crashes".into(), json!(crashes));
    m.insert("restarts".into(), json!(restarted));
    m.insert("false_failed".into(), json!(false_failed));
    m.insert("true_failed".into(), json!(true_failed));
    m.insert("stale_views".into(), json!(stale));
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().sum::<usize>() as f64 / samples.len() as f64
    };
    m.insert(
        "stale_views_mean".into(),
        json!((mean * 10.0).round() / 10.0),
    );
    m.insert(
        "stale_views_max".into(),
        json!(samples.iter().copied().max().unwrap_or(0)),
    );
    wrap_up(&sim, opts, "churn", &mut m);
    m
}

/// A formed cluster of `opts.nodes` under `opts.loss`, settled 5 s, its events drained (for the
/// scenarios that then measure one action); with the formation time.
fn settled_cluster(opts: &Options) -> (Sim, Option<Duration>) {
    let mut sim = Sim::new(opts.seed, net(opts, 0.0));
    let formed = form_cluster(&mut sim, opts.nodes, &opts.config);
    sim.set_net(net(opts, opts.loss));
    sim.run_for(Duration::from_secs(5));
    sim.drain_events().for_each(drop);
    (sim, formed)
}

/// `event`: converge, settle 5 s, node 0 fires a user event; time until every node has it.
pub fn event(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let (mut sim, formed) = settled_cluster(opts);
    let t0 = sim.now();
    sim.with_node(0, |node, now| {
        node.user_event(now, "bench", &b"payload"[..], false)
    })
    .expect("user event accepted");
    let mut got = vec![false; n];
    let mut count = 0;
    let all = sim.run_until_pred(t0 + Duration::from_secs(120), |sim, _| {
        for (_, i, e) in sim.drain_events() {
            if matches!(e, Event::User(_)) && !got[i] {
                got[i] = true;
                count += 1;
            }
        }
        count == n
    });
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert(
        "t_event_all_ms".into(),
        json!(all.then(|| ms(sim.now().saturating_since(t0)))),
    );
    m.insert("delivered".into(), json!(count));
    m.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", sim.trace_hash())),
    );
    m
}

/// `query`: converge, settle 5 s, node 0 asks everyone (default timeout); every node answers
/// as soon as it sees the query. Time until the asker's query is done, and how many answered.
pub fn query(opts: &Options) -> Map<String, Value> {
    let (mut sim, formed) = settled_cluster(opts);
    let t0 = sim.now();
    let id = sim
        .with_node(0, |node, now| {
            node.query(now, "bench", &b"?"[..], Default::default())
        })
        .expect("query accepted");
    let mut done: Option<(Timestamp, usize)> = None;
    let mut responses = 0;
    sim.run_until_pred(t0 + Duration::from_secs(600), |sim, _| {
        let evs: Vec<_> = sim.drain_events().collect();
        for (t, i, e) in evs {
            match e {
                Event::Query(q) => {
                    let h = q.handle.clone();
                    let _ = sim.with_node(i, |node, now| node.respond(now, &h, &b"!"[..]));
                }
                Event::QueryResponse { query, .. } if i == 0 && query == id => responses += 1,
                Event::QueryDone {
                    query,
                    responses: r,
                    ..
                } if i == 0 && query == id => {
                    done = Some((t, r));
                }
                _ => {}
            }
        }
        done.is_some()
    });
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert(
        "t_query_done_ms".into(),
        json!(done.map(|(t, _)| ms(t.saturating_since(t0)))),
    );
    m.insert(
        "responses".into(),
        json!(done.map_or(responses, |(_, r)| r)),
    );
    m.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", sim.trace_hash())),
    );
    m
}

/// Run `f`, and add the common fields and the wall time.
pub fn run(
    scenario: &str,
    config_name: &str,
    opts: &Options,
    f: impl FnOnce(&Options) -> Map<String, Value>,
) -> Value {
    let start = Instant::now();
    let metrics = f(opts);
    let wall = start.elapsed().as_secs_f64();
    let mut out = Map::new();
    out.insert("scenario".into(), json!(scenario));
    out.insert("nodes".into(), json!(opts.nodes));
    out.insert("seed".into(), json!(opts.seed));
    out.insert("loss".into(), json!(opts.loss));
    out.insert("reliable".into(), json!(opts.reliable.name()));
    out.insert("config".into(), json!(config_name));
    out.insert("wall_s".into(), json!((wall * 1000.0).round() / 1000.0));
    out.extend(metrics);
    Value::Object(out)
}
