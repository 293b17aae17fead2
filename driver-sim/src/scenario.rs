//! The benchmark scenarios behind the runner (`cargo run --release -p rookery-sim -- <name>`):
//! cluster formation, crash detection, false verdicts under loss, and steady-state traffic.
//! Each returns its metrics; the runner prints them as one JSON object.

use std::time::{Duration, Instant};

use rookery_core::{Config, Event, MemberStatus, Timestamp};
use serde_json::{json, Map, Value};

use crate::{NetConfig, Sim};

/// Settings shared by every scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster size.
    pub nodes: usize,
    /// Seed of the whole run.
    pub seed: u64,
    /// Datagram loss rate during the measured phase.
    pub loss: f64,
    /// Length of the measured phase (lossy and steady).
    pub duration: Duration,
    /// Protocol configuration of every node.
    pub config: Config,
}

/// How long formation may take before a scenario gives up, in virtual time.
pub const FORMATION_LIMIT: Duration = Duration::from_secs(900);

/// Start node 0, then node i at i·10 ms joining node 0; run until every node sees all N alive.
/// Returns the time from the last start to convergence (None if it never converged).
pub fn form_cluster(sim: &mut Sim, n: usize, config: &Config) -> Option<Duration> {
    for i in 0..n {
        sim.run_until(Timestamp::from_millis(i as u64 * 10));
        sim.drain_events().for_each(drop);
        let id = sim.add_node(config.clone(), &format!("node-{i}"));
        if i > 0 {
            sim.join(id, &[0]);
        }
    }
    let last_start = sim.now();
    let mut full = vec![false; n];
    let mut count = 0;
    for (i, f) in full.iter_mut().enumerate() {
        if sim.node(i).alive_count() == n {
            *f = true;
            count += 1;
        }
    }
    let ok = sim.run_until_pred(last_start + FORMATION_LIMIT, |sim, touched| {
        sim.drain_events().for_each(drop);
        if let Some(i) = touched {
            let now_full = sim.node(i).alive_count() == n;
            if now_full != full[i] {
                full[i] = now_full;
                if now_full {
                    count += 1;
                } else {
                    count -= 1;
                }
            }
        }
        count == n
    });
    ok.then(|| sim.now().saturating_since(last_start))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `join`: formation time.
pub fn join(opts: &Options) -> Map<String, Value> {
    let mut sim = Sim::new(opts.seed, NetConfig::default());
    let t = form_cluster(&mut sim, opts.nodes, &opts.config);
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(t.map(ms)));
    m.insert("sim_s".into(), json!(sim.now().as_millis() as f64 / 1e3));
    m.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", sim.trace_hash())),
    );
    m
}

/// `crash`: converge, wait 10 s, crash the last node; time until the first and until every
/// other node marks it failed.
pub fn crash(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let mut sim = Sim::new(opts.seed, NetConfig::default());
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
    m.insert("sim_s".into(), json!(sim.now().as_millis() as f64 / 1e3));
    m.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", sim.trace_hash())),
    );
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
    let mut sim = Sim::new(opts.seed, NetConfig::default());
    let formed = form_cluster(&mut sim, opts.nodes, &opts.config);
    sim.set_net(NetConfig {
        loss: opts.loss,
        ..NetConfig::default()
    });
    let v = count_false_verdicts(&mut sim, opts.duration);
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
        "trace_hash".into(),
        json!(format!("{:016x}", sim.trace_hash())),
    );
    m
}

/// `steady`: converge, settle 10 s, then measure traffic sent over `duration`.
pub fn steady(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let mut sim = Sim::new(opts.seed, NetConfig::default());
    sim.set_record_events(false);
    let formed = form_cluster(&mut sim, n, &opts.config);
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
    sim.run_for(opts.duration);
    let (b1, p1) = totals(&sim);
    let per = |x: u64| x as f64 / n as f64 / opts.duration.as_secs_f64();
    let mut m = Map::new();
    m.insert("t_converge_ms".into(), json!(formed.map(ms)));
    m.insert("duration_s".into(), json!(opts.duration.as_secs_f64()));
    m.insert(
        "bytes_per_node_s".into(),
        json!((per(b1 - b0) * 10.0).round() / 10.0),
    );
    m.insert(
        "packets_per_node_s".into(),
        json!((per(p1 - p0) * 1000.0).round() / 1000.0),
    );
    m.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", sim.trace_hash())),
    );
    m
}

/// `event`: converge, settle 5 s, node 0 fires a user event; time until every node has it.
pub fn event(opts: &Options) -> Map<String, Value> {
    let n = opts.nodes;
    let mut sim = Sim::new(opts.seed, NetConfig::default());
    let formed = form_cluster(&mut sim, n, &opts.config);
    sim.set_net(NetConfig {
        loss: opts.loss,
        ..NetConfig::default()
    });
    sim.run_for(Duration::from_secs(5));
    sim.drain_events().for_each(drop);
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
    let n = opts.nodes;
    let mut sim = Sim::new(opts.seed, NetConfig::default());
    let formed = form_cluster(&mut sim, n, &opts.config);
    sim.set_net(NetConfig {
        loss: opts.loss,
        ..NetConfig::default()
    });
    sim.run_for(Duration::from_secs(5));
    sim.drain_events().for_each(drop);
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
    out.insert("config".into(), json!(config_name));
    out.insert("wall_s".into(), json!((wall * 1000.0).round() / 1000.0));
    out.extend(metrics);
    Value::Object(out)
}
