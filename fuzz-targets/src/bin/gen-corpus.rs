//! Generate the seed corpus of the fuzz targets from simulator runs.
//!
//! `cargo run -p rookery-fuzz-targets --bin gen-corpus [-- OUT_DIR]` (default `fuzz/corpus`)
//! runs a few scenarios (formation, crash, leave, refutation, joining, loss, tag changes) with
//! the simulator's input tap on, and writes:
//! - `decode/`: datagrams and frame bodies the nodes exchanged, and frame streams;
//! - `node/`: node 0's recorded inputs (with the API calls made on it) as `node` scripts, so
//!   the target replays node 0's life exactly (checked: the replay ends in node 0's view);
//! - `cluster/`: a dozen hand-written fault scripts.
//!
//! File names are content hashes; existing files are kept.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rookery_core::{Call, Config, Input, Tags, Timestamp};
use rookery_fuzz_targets::cluster::{ClusterScript, Fault};
use rookery_fuzz_targets::node::{pool_index, Header, Op, Script};
use rookery_sim::{NetConfig, Sim, TapEntry};

/// What a scenario recorded.
struct Recording {
    name: &'static str,
    seed: u64,
    entries: Vec<TapEntry>,
    /// API calls made on node 0, at the index of `entries` they came before.
    api: Vec<(usize, Op)>,
    /// Node 0's final member view.
    view: Vec<rookery_core::Member>,
}

struct Runner {
    sim: Sim,
    entries: Vec<TapEntry>,
    api: Vec<(usize, Op)>,
}

impl Runner {
    fn new(seed: u64, nodes: usize) -> Runner {
        let mut sim = Sim::new(seed, NetConfig::default());
        sim.set_tap(true);
        for i in 0..nodes {
            sim.add_node(Config::local(), &format!("node-{i}"));
        }
        Runner {
            sim,
            entries: Vec::new(),
            api: Vec::new(),
        }
    }

    fn collect(&mut self) {
        self.entries.extend(self.sim.drain_tap());
        self.sim.drain_events().for_each(drop);
    }

    fn run(&mut self, d: Duration) {
        self.sim.run_for(d);
        self.collect();
    }

    fn api(&mut self, i: usize, op: Op) {
        self.collect();
        if i == 0 {
            self.api.push((self.entries.len(), op));
        }
    }

    fn join(&mut self, i: usize, seed: usize) {
        self.api(i, Op::Join(vec![seed as u8]));
        self.sim.join(i, &[seed]);
    }

    fn leave(&mut self, i: usize) {
        self.api(i, Op::Leave);
        self.sim.leave(i);
    }

    fn set_tags(&mut self, i: usize, bytes: Vec<u8>) {
        let tags = arbitrary::Arbitrary::arbitrary(&mut arbitrary::Unstructured::new(&bytes))
            .unwrap_or_else(|_| Tags::new());
        self.api(i, Op::SetTags(bytes));
        let call = Input::from(Call::SetTags(tags));
        let _ = self.sim.with_node(i, |n, now| n.handle(now, call));
    }

    fn finish(mut self, name: &'static str, seed: u64) -> Recording {
        self.collect();
        Recording {
            name,
            seed,
            entries: self.entries,
            api: self.api,
            view: self.sim.node(0).members(),
        }
    }
}

fn form(seed: u64, n: usize) -> Runner {
    let mut r = Runner::new(seed, n);
    for i in 1..n {
        r.join(i, 0);
    }
    r.run(Duration::from_secs(3));
    r
}

fn scenarios() -> Vec<Recording> {
    let mut out = Vec::new();

    let mut r = form(11, 5);
    r.run(Duration::from_secs(7));
    out.push(r.finish("form", 11));

    let mut r = form(12, 4);
    r.sim.crash(3);
    r.run(Duration::from_secs(30));
    out.push(r.finish("crash", 12));

    let mut r = form(13, 4);
    r.leave(2);
    r.run(Duration::from_secs(10));
    out.push(r.finish("peer-leave", 13));

    let mut r = form(14, 3);
    r.leave(0);
    r.run(Duration::from_secs(5));
    out.push(r.finish("self-leave", 14));

    let mut r = form(15, 4);
    r.sim.isolate(0, true);
    r.run(Duration::from_secs(4));
    r.sim.isolate(0, false);
    r.run(Duration::from_secs(20));
    out.push(r.finish("refute", 15));

    // Node 0 joins an existing cluster of three.
    let mut r = Runner::new(16, 4);
    r.join(2, 1);
    r.join(3, 1);
    r.run(Duration::from_secs(2));
    r.join(0, 1);
    r.run(Duration::from_secs(8));
    out.push(r.finish("joiner", 16));

    let mut r = form(17, 5);
    r.sim.set_net(NetConfig {
        loss: 0.25,
        ..NetConfig::default()
    });
    r.run(Duration::from_secs(30));
    out.push(r.finish("lossy", 17));

    let mut r = form(18, 3);
    r.set_tags(0, b"\x05role\x02db".to_vec());
    r.set_tags(1, b"\x03dcX\x04east".to_vec());
    r.run(Duration::from_secs(5));
    out.push(r.finish("tags", 18));

    // A join through a seed that is down, then through a live one.
    let mut r = Runner::new(19, 3);
    r.join(1, 2);
    r.sim.crash(2);
    r.join(0, 2);
    r.run(Duration::from_secs(2));
    r.join(0, 1);
    r.run(Duration::from_secs(5));
    out.push(r.finish("dead-seed", 19));

    out
}

fn write(dir: &Path, data: &[u8]) -> bool {
    let mut h = std::hash::DefaultHasher::new();
    data.hash(&mut h);
    let path = dir.join(format!("{:016x}", h.finish()));
    if path.exists() {
        return false;
    }
    std::fs::write(&path, data).expect("write corpus file");
    true
}

/// The address selector of a simulator address (pool members only).
fn sel(addr: std::net::SocketAddr) -> Option<u8> {
    pool_index(addr).map(|k| k as u8)
}

/// Node 0's recorded life as script ops, cut after `max_ops`.
fn node_ops(rec: &Recording, max_ops: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut now = Timestamp::ZERO;
    let mut api = rec.api.iter().peekable();
    for (idx, e) in rec.entries.iter().enumerate() {
        while let Some((_, op)) = api.next_if(|(at, _)| *at <= idx) {
            ops.push(op.clone());
        }
        if ops.len() >= max_ops {
            return ops;
        }
        if e.node != 0 {
            continue;
        }
        let dt = e.at.as_micros() - now.as_micros();
        if dt > 0 {
            ops.push(Op::Advance(u32::try_from(dt).expect("steps under an hour")));
            now = e.at;
        }
        let op = match &e.input {
            Input::Timeout => Op::Timeout,
            Input::Datagram { from, payload } => {
                Op::Packet(sel(*from).expect("pool"), payload.to_vec())
            }
            Input::Stream { from, body } => Op::Stream(sel(*from).expect("pool"), body.to_vec()),
            Input::SendFailed { to, .. } => Op::SendFailure(sel(*to).expect("pool")),
            Input::Call(c) => unreachable!("the tap records no API call: {c:?}"),
        };
        ops.push(op);
    }
    ops.extend(api.map(|(_, op)| op.clone()));
    ops
}

fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| rookery_fuzz_targets::fuzz_dir().join("corpus"));
    for t in rookery_fuzz_targets::TARGETS {
        std::fs::create_dir_all(out.join(t)).expect("create corpus folder");
    }
    let mut counts = [0usize; 3];
    let recs = scenarios();
    for rec in &recs {
        // decode: a spread of distinct datagrams and frame bodies, and one frame stream.
        let mut datagrams = BTreeSet::new();
        let mut frames = BTreeSet::new();
        for e in &rec.entries {
            match &e.input {
                Input::Datagram { payload, .. } => {
                    datagrams.insert(payload.to_vec());
                }
                Input::Stream { body, .. } => {
                    frames.insert(body.to_vec());
                }
                _ => {}
            }
        }
        let spread = |set: &BTreeSet<Vec<u8>>, n: usize| -> Vec<Vec<u8>> {
            let v: Vec<&Vec<u8>> = set.iter().collect();
            let step = v.len().div_ceil(n).max(1);
            v.into_iter().step_by(step).cloned().collect()
        };
        let dir = out.join("decode");
        for d in spread(&datagrams, 12) {
            let mut input = vec![0u8];
            input.extend(d);
            counts[0] += write(&dir, &input) as usize;
        }
        for (i, f) in spread(&frames, 6).into_iter().enumerate() {
            let mut input = vec![1u8];
            input.extend(&f);
            counts[0] += write(&dir, &input) as usize;
            // The same frame in a stream, cut into chunks of a varying size.
            let mut stream = vec![2u8, (i * 7 + 1) as u8];
            stream.extend((f.len() as u32).to_be_bytes());
            stream.extend(&f);
            counts[0] += write(&dir, &stream) as usize;
        }

        // node: node 0's life, whole (when small) and cut short.
        let seed: u64 = ChaCha8Rng::seed_from_u64(rec.seed).random();
        let full = node_ops(rec, usize::MAX);
        let script = Script {
            header: Header::sim(seed),
            ops: full.clone(),
        };
        let (_, view) = rookery_fuzz_targets::node::run_script_view(&script);
        if view != rec.view {
            eprintln!(
                "warning: {}: the replay of node 0 diverged from the simulator",
                rec.name
            );
        }
        let dir = out.join("node");
        for cut in [16, 48, 128, 400] {
            let script = Script {
                header: Header::sim(seed),
                ops: full.iter().take(cut).cloned().collect(),
            };
            let bytes = script.encode();
            if bytes.len() <= 64 * 1024 {
                counts[1] += write(&dir, &bytes) as usize;
            }
        }
        eprintln!(
            "{}: {} inputs recorded, {} node-0 ops, {} datagrams, {} frames",
            rec.name,
            rec.entries.len(),
            full.len(),
            datagrams.len(),
            frames.len()
        );
    }

    // cluster: hand-written fault scripts.
    use Fault::*;
    let scripts: Vec<(u64, usize, Vec<Fault>)> = vec![
        (1, 3, vec![Run(2000), Crash(2), Run(20000)]),
        (
            2,
            4,
            vec![
                Run(1000),
                Isolate(1, true),
                Run(8000),
                Isolate(1, false),
                Run(10000),
            ],
        ),
        (3, 4, vec![Run(1000), Leave(3), Run(5000)]),
        (4, 5, vec![Loss(30), Run(30000), Loss(0), Run(5000)]),
        (
            5,
            3,
            vec![Latency(200), Run(10000), SetTags(0, 7), Run(3000)],
        ),
        (
            6,
            2,
            vec![
                AddNode(0),
                Run(3000),
                AddNode(2),
                Run(3000),
                Crash(1),
                Run(10000),
            ],
        ),
        (7, 6, vec![Crash(5), Crash(4), Run(30000)]),
        (
            8,
            4,
            vec![
                Isolate(0, true),
                Run(30000),
                Isolate(0, false),
                Join(0, 1),
                Run(5000),
            ],
        ),
        (
            9,
            3,
            vec![
                Loss(50),
                SetTags(1, 2),
                Run(15000),
                SetTags(1, 3),
                Run(15000),
            ],
        ),
        (
            10,
            5,
            vec![
                Leave(0),
                Run(2000),
                Crash(1),
                Run(20000),
                AddNode(2),
                Run(5000),
            ],
        ),
        (
            11,
            4,
            vec![
                Run(500),
                Isolate(2, true),
                Loss(20),
                Run(12000),
                Crash(3),
                Run(3000),
            ],
        ),
        (
            12,
            3,
            vec![
                Join(1, 2),
                Run(100),
                Join(2, 1),
                Loss(10),
                Latency(50),
                Run(20000),
            ],
        ),
    ];
    let dir = out.join("cluster");
    for (seed, nodes, faults) in scripts {
        let s = ClusterScript {
            seed,
            nodes,
            faults,
        };
        counts[2] += write(&dir, &s.encode()) as usize;
    }
    eprintln!(
        "new corpus files: decode {}, node {}, cluster {} (in {})",
        counts[0],
        counts[1],
        counts[2],
        out.display()
    );
}
