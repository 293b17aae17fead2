//! The reliable channel's models in whole simulations: the perfect one hashes as it always did,
//! the TCP one is deterministic, runs as the perfect one without loss, and under heavy loss
//! fails sends a `tcp_timeout` after they were made.

use std::time::Duration;

use rookery_core::{Config, Input};
use rookery_sim::scenario::{self, Options};
use rookery_sim::{NetConfig, ReliableModel, Sim};

/// What a scenario reports.
type Metrics = serde_json::Map<String, serde_json::Value>;

/// memberlist's LAN timing (`Config::memberlist()`, the `Config::lan()` of the day the golden
/// hashes below were recorded): these tests pin the network models, not the protocol's
/// defaults, so they run the preset the hashes were taken with.
fn opts(nodes: usize, reliable: ReliableModel) -> Options {
    Options {
        nodes,
        seed: 1,
        duration: Duration::from_secs(20),
        reliable,
        config: Config::memberlist(),
        ..Options::default()
    }
}

fn hash(m: &Metrics) -> String {
    m["trace_hash"].as_str().expect("a trace hash").to_owned()
}

/// Golden values recorded with the runner before the TCP model existed
/// (`rookery-sim lossy --nodes 20 --duration 20 --loss 0.2`, `join --nodes 20`, seed 1).
#[test]
fn perfect_model_hashes_as_before() {
    let lossy = scenario::lossy(&Options {
        loss: 0.2,
        ..opts(20, ReliableModel::Perfect)
    });
    assert_eq!(hash(&lossy), "78f5a8c49cf232d0");
    let join = scenario::join(&opts(20, ReliableModel::Perfect));
    assert_eq!(hash(&join), "a57f9d4b56defc77");
}

#[test]
fn tcp_model_without_loss_runs_as_the_perfect_one() {
    let scenarios: [fn(&Options) -> Metrics; 2] = [scenario::join, scenario::crash];
    for f in scenarios {
        let perfect = f(&opts(20, ReliableModel::Perfect));
        let tcp = f(&opts(20, ReliableModel::Tcp));
        assert_eq!(hash(&perfect), hash(&tcp));
    }
}

#[test]
fn tcp_model_is_deterministic_and_retransmits_under_loss() {
    let o = Options {
        loss: 0.3,
        ..opts(20, ReliableModel::Tcp)
    };
    let a = scenario::lossy(&o);
    let b = scenario::lossy(&o);
    assert_eq!(hash(&a), hash(&b));
    assert!(a["reliable_retransmits"].as_u64().unwrap() > 0, "{a:?}");
    let perfect = scenario::lossy(&Options {
        reliable: ReliableModel::Perfect,
        ..o
    });
    assert_ne!(hash(&a), hash(&perfect));
    assert_eq!(perfect["reliable_retransmits"].as_u64(), Some(0));
}

/// A formed cluster of 10, then 60 s at 90 % loss under `reliable`: the send failures the
/// nodes were handed (time, from the tap) and the simulator's count of them.
fn heavy_loss(reliable: ReliableModel) -> (Duration, Vec<Duration>, u64) {
    let mut sim = Sim::new(7, NetConfig::default());
    scenario::form_cluster(&mut sim, 10, &Config::lan());
    sim.run_for(Duration::from_secs(5));
    sim.set_tap(true);
    let t0 = sim.now();
    let failed0 = sim.net_stats().reliable_failed;
    sim.set_net(NetConfig {
        loss: 0.9,
        reliable,
        ..NetConfig::default()
    });
    sim.run_for(Duration::from_secs(60));
    let failures = sim
        .drain_tap()
        .into_iter()
        .filter(|e| matches!(e.input, Input::SendFailed { .. }))
        .map(|e| e.at.saturating_since(t0))
        .collect();
    (
        Config::lan().tcp_timeout,
        failures,
        sim.net_stats().reliable_failed - failed0,
    )
}

#[test]
fn tcp_model_under_heavy_loss_fails_sends_after_tcp_timeout() {
    let (timeout, failures, counted) = heavy_loss(ReliableModel::Tcp);
    assert!(failures.len() >= 10, "{} failures", failures.len());
    assert_eq!(failures.len() as u64, counted);
    // Every send before the loss got through; a failure is reported `tcp_timeout` after its
    // send, so none comes earlier than that after the loss began.
    let first = failures.iter().min().unwrap();
    assert!(
        *first >= timeout,
        "first failure {first:?} after the loss began"
    );
    let (_, failures, counted) = heavy_loss(ReliableModel::Perfect);
    assert_eq!((failures.len(), counted), (0, 0));
}
