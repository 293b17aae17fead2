//! `demo`: a small simulated cluster told as a story — nodes join, one crashes, the others
//! suspect it and declare it failed, the news spreading through the cluster.

use std::time::Duration;

use rookery_core::{Event, Timestamp};
use rookery_sim::scenario::Options;
use rookery_sim::{NetConfig, Sim};

fn say(t: Timestamp, who: &str, what: String) {
    println!("[{:>9.3}s] {who:<8} {what}", t.as_micros() as f64 / 1e6);
}

fn report_joins(sim: &mut Sim, names: &[String]) {
    for (t, i, e) in sim.drain_events() {
        if let Event::JoinCompleted {
            answered,
            contacted,
        } = e
        {
            say(
                t,
                &names[i],
                format!("join completed: {answered}/{contacted} seeds answered"),
            );
        }
    }
}

pub fn run(opts: &Options) {
    let n = opts.nodes.min(20);
    println!(
        "rookery demo: {n} simulated nodes, seed {}, one-way latency 1-5 ms\n",
        opts.seed
    );
    let mut sim = Sim::new(opts.seed, NetConfig::default());
    if opts.plot.is_some() {
        sim.enable_knowledge(n);
    }
    let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        sim.run_until(Timestamp::from_millis(i as u64 * 100));
        report_joins(&mut sim, &names);
        let id = sim.add_node(opts.config.clone(), name);
        if i > 0 {
            sim.join(id, &[0]);
            say(sim.now(), name, "starts and joins through node-0".into());
        } else {
            say(sim.now(), name, "starts the cluster".into());
        }
    }
    let mut converged = None;
    let deadline = sim.now() + Duration::from_secs(60);
    while sim.now() < deadline && converged.is_none() {
        sim.run_for(Duration::from_millis(10));
        for (t, i, e) in sim.drain_events() {
            if let Event::JoinCompleted {
                answered,
                contacted,
            } = e
            {
                say(
                    t,
                    &names[i],
                    format!("join completed: {answered}/{contacted} seeds answered"),
                );
            }
        }
        if (0..n).all(|i| sim.node(i).alive_count() == n) {
            converged = Some(sim.now());
        }
    }
    match converged {
        Some(t) => say(
            t,
            "cluster",
            format!("every node sees all {n} members alive"),
        ),
        None => say(sim.now(), "cluster", "did not converge within 60 s".into()),
    }
    sim.run_for(Duration::from_secs(5));
    sim.drain_events().for_each(drop);
    let victim = n - 1;
    sim.crash(victim);
    let t0 = sim.now();
    say(
        t0,
        &names[victim],
        "CRASHES (no more packets in or out)".into(),
    );
    let mut failed_seen = 0;
    let mut suspected_seen = 0;
    let deadline = t0 + Duration::from_secs(120);
    while sim.now() < deadline && failed_seen < n - 1 {
        sim.run_for(Duration::from_millis(10));
        for (t, i, e) in sim.drain_events() {
            match e {
                Event::MemberSuspected { member, by } if *member.name == *names[victim] => {
                    suspected_seen += 1;
                    if suspected_seen <= 3 {
                        say(
                            t,
                            &names[i],
                            format!("suspects {} (first accused by {by})", member.name),
                        );
                    }
                }
                Event::MemberFailed(m) if *m.name == *names[victim] => {
                    failed_seen += 1;
                    if failed_seen == 1 || failed_seen == n - 1 || failed_seen % 5 == 0 {
                        say(
                            t,
                            &names[i],
                            format!(
                                "marks {} FAILED ({failed_seen}/{} nodes know)",
                                m.name,
                                n - 1
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    let took = sim.now().saturating_since(t0);
    println!(
        "\ncrash of {} known to all {} survivors after {:.2} s; trace hash {:016x}",
        names[victim],
        n - 1,
        took.as_secs_f64(),
        sim.trace_hash()
    );
    if let (Some(path), Some(k)) = (&opts.plot, sim.knowledge()) {
        let title = format!("rookery-sim demo: {n} nodes, seed {}", opts.seed);
        match std::fs::write(path, k.to_svg(&title, n, sim.now())) {
            Ok(()) => println!("plot written to {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}
