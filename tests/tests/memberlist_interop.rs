//! Mixed clusters of Go memberlist 0.2.2 programs (`tests/interop/memberlist-peer`, built
//! here against Debian's `golang-github-hashicorp-memberlist-dev`) and rookery agents speaking
//! the HashiCorp wire profile, on loopback: joins both ways, push-pull both ways (a joiner
//! learns the members it never met from the other side's push-pull), probes acked both ways
//! (no suspicion, no failed probe while everyone is up), failure detection and graceful
//! leaves both ways; the same encrypted with memberlist's `SecretKey` and rookery's keyring,
//! and a rookery agent with the wrong key kept out.
//!
//! Needs `go` and memberlist's sources (Debian: `apt-get install golang-go
//! golang-github-hashicorp-memberlist-dev`; `.ci/run` installs them). Without them each test
//! prints why and passes, unless `ROOKERY_REQUIRE_MEMBERLIST=1` (set by CI) makes their
//! absence a failure.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rookery_core::{Config, MemberStatus, WireProfile};
use rookery_tests::scenarios::{free_port, wait_until, Agent, TOKIO};

/// How long a mixed cluster may take to notice a change (memberlist's local profile: a
/// failed member is declared dead after its suspicion timeout, a few seconds).
const LIMIT: Duration = Duration::from_secs(30);

/// Where Debian installs memberlist's sources (GOPATH layout).
const GOCODE: &str = "/usr/share/gocode";

/// The peer program built once per test run; `None` when Go or memberlist is missing.
fn peer_binary() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let sources = Path::new(GOCODE).join("src/github.com/hashicorp/memberlist");
        let go = Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !go || !sources.is_dir() {
            assert!(
                std::env::var_os("ROOKERY_REQUIRE_MEMBERLIST").is_none(),
                "ROOKERY_REQUIRE_MEMBERLIST is set but go or memberlist's sources are missing \
                 (apt-get install golang-go golang-github-hashicorp-memberlist-dev)"
            );
            eprintln!(
                "skipped: go or Go memberlist is not installed \
                 (apt-get install golang-go golang-github-hashicorp-memberlist-dev)"
            );
            return None;
        }
        let gopath = std::env::temp_dir().join(format!("rookery-gopath-{}", std::process::id()));
        let src = gopath.join("src/memberlist-peer");
        std::fs::create_dir_all(&src).expect("gopath");
        let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/memberlist-peer/main.go");
        std::fs::copy(&main, src.join("main.go")).expect("copy main.go");
        let bin = gopath.join("memberlist-peer");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg("memberlist-peer")
            .env("GOPATH", format!("{}:{GOCODE}", gopath.display()))
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", gopath.join("cache"))
            .output()
            .expect("go build runs");
        assert!(
            out.status.success(),
            "go build memberlist-peer failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(bin)
    })
    .as_deref()
}

/// A Go memberlist member (one `memberlist-peer` process), killed on drop.
struct GoPeer {
    name: String,
    bind: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its view from its event lines: name → `alive` or `gone` (failed or left: memberlist
    /// 0.2.2 does not tell its program which).
    view: Arc<Mutex<HashMap<String, String>>>,
    /// Every line it printed.
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl GoPeer {
    /// Start a member named `name` joining `join` (none: it starts a cluster), with
    /// memberlist's LAN configuration (`lan`) or its local one.
    fn start(bin: &Path, name: &str, join: &[SocketAddr], lan: bool) -> GoPeer {
        GoPeer::start_with(bin, name, join, lan, None)
    }

    /// [`GoPeer::start`] encrypting with memberlist's `SecretKey` (`key`: standard base64).
    fn start_with(
        bin: &Path,
        name: &str,
        join: &[SocketAddr],
        lan: bool,
        key: Option<&str>,
    ) -> GoPeer {
        let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::env::temp_dir().join(format!(
            "rookery-memberlist-{}-{name}-{}.log",
            std::process::id(),
            bind.port()
        ));
        let join: Vec<String> = join.iter().map(SocketAddr::to_string).collect();
        let mut child = Command::new(bin)
            .arg(format!("-name={name}"))
            .arg(format!("-bind={bind}"))
            .arg(format!("-join={}", join.join(",")))
            .arg(format!("-lan={lan}"))
            .arg(format!("-key={}", key.unwrap_or("")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("memberlist-peer starts");
        let view = Arc::new(Mutex::new(HashMap::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let v = Arc::clone(&view);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                l.lock().expect("lines").push(line.clone());
                let f: Vec<&str> = line.split_whitespace().collect();
                let mut view = v.lock().expect("view");
                match f.as_slice() {
                    ["join", who, _] => {
                        view.insert(who.to_string(), "alive".into());
                    }
                    ["leave", who] => {
                        view.insert(who.to_string(), "gone".into());
                    }
                    ["joined", ..] | ["ready", ..] => {
                        let _ = ready_tx.send(line.clone());
                    }
                    _ => {}
                }
            }
        });
        let mut peer = GoPeer {
            name: name.to_string(),
            bind,
            stdin: child.stdin.take(),
            child,
            view,
            lines,
            log,
        };
        // `ready`, then `joined <n>` when it was told to join.
        for _ in 0..if join.is_empty() { 1 } else { 2 } {
            let got = ready_rx.recv_timeout(Duration::from_secs(15));
            assert!(
                got.is_ok(),
                "memberlist peer {name} did not start/join: {}",
                peer.log()
            );
        }
        peer.stdin.as_mut().expect("stdin").flush().expect("flush");
        peer
    }

    /// What it holds `name` as (`alive`, `gone`), from its events.
    fn status_of(&self, name: &str) -> Option<String> {
        self.view.lock().expect("view").get(name).cloned()
    }

    /// Every line it printed so far (its events), one per line.
    fn printed(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Memberlist's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A graceful leave (memberlist's `Leave`, then shutdown).
    fn leave(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            writeln!(stdin, "leave").expect("leave command");
        }
        let _ = self.child.wait();
    }

    /// Kill the process: no leave.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// rookery's side: memberlist's wire without Serf's layer, with memberlist's LAN timing
/// (`lan`) or its local one, as the Go members use.
fn memberlist_config(lan: bool) -> Config {
    Config {
        wire: WireProfile::Memberlist,
        ..if lan {
            Config::memberlist()
        } else {
            Config::local()
        }
    }
}

/// Whether every Go peer and every rookery agent sees every one of `names` alive.
fn all_alive(go: &[&GoPeer], rk: &[Arc<Agent>], names: &[String]) -> bool {
    go.iter().all(|g| {
        names
            .iter()
            .filter(|n| **n != g.name)
            .all(|n| g.status_of(n).as_deref() == Some("alive"))
    }) && rk.iter().all(|a| {
        names
            .iter()
            .all(|n| a.status_of(n) == Some(MemberStatus::Alive))
    })
}

/// Suspicions memberlist logged (it logs each member it starts to suspect).
fn suspicions(g: &GoPeer) -> Vec<String> {
    g.log()
        .lines()
        .filter(|l| l.contains("Suspect"))
        .map(str::to_string)
        .collect()
}

/// Two Go members, two rookery agents joining through Go, a third Go member joining through
/// rookery: every view converges (the joiners learn members they never contacted from the
/// push-pull of the side they joined); then five seconds of probing both ways with no
/// suspicion anywhere, no failed probe and no refused input on the rookery side.
#[test]
fn joins_push_pull_and_probes_both_ways() {
    let Some(bin) = peer_binary() else { return };
    let go0 = GoPeer::start(bin, "go-0", &[], true);
    let go1 = GoPeer::start(bin, "go-1", &[go0.bind], true);
    let rk: Vec<Arc<Agent>> = (0..2)
        .map(|i| Agent::start(TOKIO, &format!("jp-rk-{i}"), memberlist_config(true)))
        .collect();
    assert_eq!(rk[0].join(&[go0.bind]), Ok(1), "rookery joins Go");
    // rk-0 knows go-1 from go-0's push-pull answer at once (gossip would take longer).
    assert_eq!(
        rk[0].status_of("go-1"),
        Some(MemberStatus::Alive),
        "push-pull from Go"
    );
    assert_eq!(
        rk[1].join(&[rk[0].local_addr()]),
        Ok(1),
        "rookery joins rookery"
    );
    // A Go member joining through rookery learns everyone from rookery's push-pull.
    let go2 = GoPeer::start(bin, "go-2", &[rk[1].local_addr()], true);
    for n in ["go-0", "go-1", "jp-rk-0", "jp-rk-1"] {
        assert_eq!(
            go2.status_of(n).as_deref(),
            Some("alive"),
            "go-2 learns {n} from rookery's push-pull on its join"
        );
    }
    let go = [&go0, &go1, &go2];
    let names: Vec<String> = ["go-0", "go-1", "go-2", "jp-rk-0", "jp-rk-1"]
        .map(String::from)
        .to_vec();
    let (ok, took) = wait_until(LIMIT, || all_alive(&go, &rk, &names));
    assert!(
        ok,
        "views did not converge in {took:?}: rk-0 sees {:?}\ngo-0 printed:\n{}\ngo-0 log:\n{}",
        rk[0].members(),
        go0.printed(),
        go0.log()
    );
    eprintln!("mixed cluster of 5 converged in {took:?}");
    let before: Vec<u64> = rk
        .iter()
        .map(|a| a.stats().expect("stats").core.probes_ok)
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    assert!(all_alive(&go, &rk, &names), "a member fell out of a view");
    for g in go {
        let s = suspicions(g);
        assert!(s.is_empty(), "{} suspected: {s:?}\n{}", g.name, g.log());
        let log = g.log();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("[ERR]")).collect();
        assert!(errors.is_empty(), "{} logged errors: {errors:?}", g.name);
    }
    for (a, before) in rk.iter().zip(before) {
        let s = a.stats().expect("stats").core;
        assert!(s.probes_ok > before, "{a:?} probed nobody successfully");
        assert_eq!(s.probes_failed, 0, "{a:?} had failed probes");
        assert_eq!(s.decode_errors, 0, "{a:?} refused input");
        assert_eq!(s.refutations, 0, "{a:?} had to refute a suspicion");
    }
}

/// Graceful leaves both ways, then failure detection both ways: a Go member's leave is
/// left on every rookery agent; a rookery agent's leave (a dead message from itself) makes
/// every Go member drop it without ever suspecting it (memberlist 0.2.2 does not tell its
/// program a left member from a failed one); a killed Go member is failed on every rookery
/// agent; a crashed rookery agent is dropped by every Go member. The leaves come first: a Go
/// member's departure is gossiped to only `RetransmitMult · ⌈log10(n + 1)⌉` members, picked
/// among the live and the recently dead alike, so next to dead members memberlist itself may
/// lose it (its program then sees a failure).
#[test]
fn leave_and_failure_both_ways() {
    let Some(bin) = peer_binary() else { return };
    let go0 = GoPeer::start(bin, "go-0", &[], false);
    let mut go1 = GoPeer::start(bin, "go-1", &[go0.bind], false);
    let mut go2 = GoPeer::start(bin, "go-2", &[go0.bind], false);
    let rk: Vec<Arc<Agent>> = (0..3)
        .map(|i| Agent::start(TOKIO, &format!("fl-rk-{i}"), memberlist_config(false)))
        .collect();
    for a in &rk {
        assert_eq!(a.join(&[go0.bind]), Ok(1), "{a:?} joins Go");
    }
    let names: Vec<String> = ["go-0", "go-1", "go-2", "fl-rk-0", "fl-rk-1", "fl-rk-2"]
        .map(String::from)
        .to_vec();
    let (ok, took) = wait_until(LIMIT, || all_alive(&[&go0, &go1, &go2], &rk, &names));
    assert!(
        ok,
        "views did not converge in {took:?}: {:?}\ngo-0 printed:\n{}",
        rk[0].members(),
        go0.printed()
    );
    // A graceful Go leave is left on every rookery agent.
    go1.leave();
    let (ok, took) = wait_until(LIMIT, || {
        rk.iter()
            .all(|a| a.status_of("go-1") == Some(MemberStatus::Left))
    });
    let views: Vec<_> = rk.iter().map(|a| a.status_of("go-1")).collect();
    assert!(
        ok,
        "go-1 not left on every rookery agent in {took:?}: {views:?}"
    );
    eprintln!("graceful Go leave left on every rookery agent in {took:?}");
    // A graceful rookery leave: the Go members drop it without suspecting it first, and the
    // other rookery agents hold it left.
    rk[1].leave().expect("leave");
    let (ok, took) = wait_until(LIMIT, || {
        [&go0, &go2]
            .iter()
            .all(|g| g.status_of("fl-rk-1").as_deref() == Some("gone"))
            && [&rk[0], &rk[2]]
                .iter()
                .all(|a| a.status_of("fl-rk-1") == Some(MemberStatus::Left))
    });
    assert!(
        ok,
        "fl-rk-1 not left in {took:?}: go-0 holds {:?}, fl-rk-0 {:?}\n{}",
        go0.status_of("fl-rk-1"),
        rk[0].status_of("fl-rk-1"),
        go0.log()
    );
    for g in [&go0, &go2] {
        let s: Vec<String> = g
            .log()
            .lines()
            .filter(|l| l.contains("Suspect") || l.contains("Marking"))
            .filter(|l| l.contains("fl-rk-1"))
            .map(str::to_string)
            .collect();
        assert!(s.is_empty(), "{} suspected the leaver: {s:?}", g.name);
    }
    eprintln!("graceful rookery leave seen on every member in {took:?}");
    // A killed Go member is failed on every rookery agent still running.
    go2.kill();
    let running = [&rk[0], &rk[2]];
    let (ok, took) = wait_until(LIMIT, || {
        running
            .iter()
            .all(|a| a.status_of("go-2") == Some(MemberStatus::Failed))
    });
    let views: Vec<_> = running.iter().map(|a| a.status_of("go-2")).collect();
    assert!(
        ok,
        "go-2 not failed on the rookery agents in {took:?}: {views:?}"
    );
    eprintln!("killed Go member failed on every rookery agent in {took:?}");
    // A crashed rookery agent is dropped by the Go member.
    rk[2].shutdown(rookery_driver::ShutdownMode::Now);
    let (ok, took) = wait_until(LIMIT, || {
        go0.status_of("fl-rk-2").as_deref() == Some("gone")
    });
    assert!(
        ok,
        "fl-rk-2 not failed on go-0 in {took:?}: {:?}\n{}",
        go0.status_of("fl-rk-2"),
        go0.log()
    );
    eprintln!("crashed rookery agent failed on the Go member in {took:?}");
}

/// The key of the encrypted clusters: bytes 1 to 32 (AES-256), and as base64 for Go.
fn cluster_key() -> Vec<u8> {
    (1..=32).collect()
}

/// [`cluster_key`] in standard base64.
const CLUSTER_KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// Encrypted with memberlist's own format (Go's `SecretKey`, rookery's keyring on
/// `WireProfile::Memberlist`): a rookery agent joins a Go member and a second Go member joins
/// through rookery, views converge, probes are acked both ways with nothing refused on either
/// side; a killed Go member is failed on the rookery agent; a rookery agent with the wrong key
/// does not get in and counts the Go member's sealed answers as undecryptable.
#[test]
fn encrypted_joins_probes_and_failure_both_ways() {
    let Some(bin) = peer_binary() else { return };
    let keyed = Config {
        keyring: Some(rookery_core::Keyring::new(&cluster_key()).expect("key")),
        ..memberlist_config(false)
    };
    let go0 = GoPeer::start_with(bin, "go-0", &[], false, Some(CLUSTER_KEY_B64));
    let rk = Agent::start(TOKIO, "en-rk-0", keyed);
    assert_eq!(rk.join(&[go0.bind]), Ok(1), "rookery joins Go, encrypted");
    let mut go1 = GoPeer::start_with(
        bin,
        "go-1",
        &[rk.local_addr()],
        false,
        Some(CLUSTER_KEY_B64),
    );
    let go = [&go0, &go1];
    let names: Vec<String> = ["go-0", "go-1", "en-rk-0"].map(String::from).to_vec();
    let rks = [rk.clone()];
    let (ok, took) = wait_until(LIMIT, || all_alive(&go, &rks, &names));
    assert!(
        ok,
        "encrypted views did not converge in {took:?}: {:?}\ngo-0 log:\n{}",
        rk.members(),
        go0.log()
    );
    eprintln!("encrypted mixed cluster of 3 converged in {took:?}");
    let before = rk.stats().expect("stats").core.probes_ok;
    std::thread::sleep(Duration::from_secs(4));
    assert!(all_alive(&go, &rks, &names), "a member fell out of a view");
    let s = rk.stats().expect("stats").core;
    assert!(s.probes_ok > before, "no probe acked");
    assert_eq!(
        (
            s.probes_failed,
            s.decode_errors,
            s.sealed_no_key,
            s.plaintext_refused
        ),
        (0, 0, 0, 0),
        "failed probes or refused input on the rookery agent"
    );
    for g in go {
        let log = g.log();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("[ERR]")).collect();
        assert!(errors.is_empty(), "{} logged errors: {errors:?}", g.name);
        assert!(suspicions(g).is_empty(), "{} suspected someone", g.name);
    }
    // The wrong key: kept out, the Go member's sealed answers counted.
    let wrong = Agent::start(
        TOKIO,
        "en-wrong",
        Config {
            keyring: Some(rookery_core::Keyring::new(&[9; 32]).expect("key")),
            ..memberlist_config(false)
        },
    );
    let joined = wrong.join(&[go0.bind]);
    assert!(joined.is_err(), "the wrong key joined: {joined:?}");
    let (refused, _) = wait_until(Duration::from_secs(10), || {
        wrong.stats().map(|s| s.core.sealed_no_key).unwrap_or(0) > 0
    });
    assert!(refused, "sealed answers not counted: {:?}", wrong.stats());
    assert_eq!(go0.status_of("en-wrong"), None, "go-0 never heard of it");
    // A killed Go member is failed on the rookery agent.
    go1.kill();
    let (ok, took) = wait_until(LIMIT, || rk.status_of("go-1") == Some(MemberStatus::Failed));
    assert!(
        ok,
        "go-1 not failed in {took:?}: {:?}",
        rk.status_of("go-1")
    );
    eprintln!("encrypted: killed Go member failed on the rookery agent in {took:?}");
}
