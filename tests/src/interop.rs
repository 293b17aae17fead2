//! The HashiCorp programs of the live interop tests (`serf_interop.rs`, `memberlist_interop.rs`),
//! as processes on loopback: [`Serf`] (a `serf agent`, driven through its CLI) and [`GoPeer`]
//! (a Go program embedding memberlist, built from `interop/memberlist-peer`), each with its log
//! in a [`Scratch`] directory removed with it, both killed on drop; [`all_alive`], the polling
//! condition of a mixed cluster, over any [`Peer`] and rookery [`Agent`]s; the cluster key both
//! suites encrypt with.
//!
//! A missing `serf` ([`Serf::present`]) or missing Go/memberlist ([`GoPeer::binary`]) skips a
//! test with a message, unless `ROOKERY_REQUIRE_SERF` / `ROOKERY_REQUIRE_MEMBERLIST` (set by
//! CI) make it a failure.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rookery_core::MemberStatus;

use crate::scenarios::{free_port, wait_until, Agent};

/// The key of the encrypted mixed clusters: bytes 1 to 32 (AES-256).
pub fn cluster_key() -> Vec<u8> {
    (1..=32).collect()
}

/// [`cluster_key`] in standard base64, as `serf agent -encrypt` and memberlist's `SecretKey`
/// (in `memberlist-peer -key`) take it.
pub const CLUSTER_KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// A loopback address with a port free right now.
fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A temporary directory for one peer process's files (its log, its event handler), named
/// after the test process, the peer and its port, and removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Create `rookery-<kind>-<pid>-<name>-<port>` in the temporary directory.
    pub fn new(kind: &str, name: &str, port: u16) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "rookery-{kind}-{}-{name}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch { dir }
    }

    /// The path of `file` in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The text of `file` in the directory so far (empty if it is not there).
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A member process of a mixed cluster whose view the tests poll.
pub trait Peer {
    /// Its member name.
    fn name(&self) -> &str;
    /// Whether it holds `member` alive (itself included).
    fn sees_alive(&self, member: &str) -> bool;
}

/// Whether every peer and every rookery agent sees every one of `names` alive.
pub fn all_alive<P: Peer>(peers: &[&P], rk: &[Arc<Agent>], names: &[impl AsRef<str>]) -> bool {
    peers
        .iter()
        .all(|p| names.iter().all(|n| p.sees_alive(n.as_ref())))
        && rk.iter().all(|a| {
            names
                .iter()
                .all(|n| a.status_of(n.as_ref()) == Some(MemberStatus::Alive))
        })
}

/// The log file in a peer's [`Scratch`] directory.
const LOG: &str = "agent.log";

/// A `serf agent` process with the `local` profile, killed on drop; its log (and event
/// handler, see [`Serf::start_with_handler`]) in its [`Scratch`] directory.
#[derive(Debug)]
pub struct Serf {
    /// Its node name.
    pub name: String,
    /// Its gossip (bind) address.
    pub bind: SocketAddr,
    /// Its RPC address, which the CLI talks to.
    pub rpc: SocketAddr,
    child: Child,
    /// Whether it runs the logging event handler.
    handler: bool,
    scratch: Scratch,
}

impl Serf {
    /// Whether `serf` can run here; panics when CI requires it (`ROOKERY_REQUIRE_SERF`) and
    /// it is missing, else says why the test is skipped.
    pub fn present() -> bool {
        let ok = Command::new("serf")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("ROOKERY_REQUIRE_SERF").is_none(),
                "ROOKERY_REQUIRE_SERF is set but `serf` does not run (apt-get install serf)"
            );
            eprintln!("skipped: `serf` is not installed (apt-get install serf)");
        }
        ok
    }

    /// Start `serf agent` named `name` (`-profile=local`, debug log), `extra` arguments
    /// added, and wait until it answers RPC.
    pub fn start(name: &str, extra: &[&str]) -> Serf {
        Serf::spawn(name, extra, false).ready()
    }

    /// [`Serf::start`] with an event handler that logs every user event and query (see
    /// [`Serf::handled`]) and answers every query with `answer-from-<name>`.
    pub fn start_with_handler(name: &str, extra: &[&str]) -> Serf {
        Serf::spawn(name, extra, true).ready()
    }

    /// Start `serf agent` as [`Serf::start`] does, without waiting for it (for an agent that
    /// may quit soon, as the loser of a name conflict does).
    pub fn spawn(name: &str, extra: &[&str], handler: bool) -> Serf {
        let (bind, rpc) = (loopback(), loopback());
        let scratch = Scratch::new("serf", name, bind.port());
        let mut args: Vec<String> = vec![
            "agent".into(),
            format!("-node={name}"),
            format!("-bind={bind}"),
            format!("-rpc-addr={rpc}"),
            "-profile=local".into(),
            "-log-level=debug".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if handler {
            let script = scratch.path("handler.sh");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\npayload=$(cat)\necho \"$SERF_EVENT $SERF_USER_EVENT$SERF_QUERY_NAME $payload\" >> {}\n\
                     if [ \"$SERF_EVENT\" = query ]; then printf 'answer-from-%s' \"$SERF_SELF_NAME\"; fi\n",
                    scratch.path("events.log").display()
                ),
            )
            .expect("handler");
            let mut perms = std::fs::metadata(&script).expect("handler").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&script, perms).expect("chmod");
            args.push(format!("-event-handler={}", script.display()));
        }
        let out = std::fs::File::create(scratch.path(LOG)).expect("log file");
        let child = Command::new("serf")
            .args(&args)
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("serf agent starts");
        Serf {
            name: name.to_string(),
            bind,
            rpc,
            child,
            handler,
            scratch,
        }
    }

    /// Wait until the agent answers RPC (panics with its log after 10 s).
    fn ready(self) -> Serf {
        let (up, _) = wait_until(Duration::from_secs(10), || self.cli(&["members"]).is_some());
        assert!(up, "serf agent {} answers RPC:\n{}", self.name, self.log());
        self
    }

    /// Run `serf <command> -rpc-addr=… <rest>` (flags go before the positional arguments);
    /// its stdout when it succeeded.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let (command, rest) = args.split_first()?;
        let out = Command::new("serf")
            .arg(command)
            .arg(format!("-rpc-addr={}", self.rpc))
            .args(rest)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `serf members`: (name, address, status, tags) per member.
    pub fn members(&self) -> Vec<(String, String, String, String)> {
        let Some(out) = self.cli(&["members"]) else {
            return Vec::new();
        };
        out.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next()?.to_string(),
                    f.next().unwrap_or("").to_string(),
                ))
            })
            .collect()
    }

    /// The status `serf members` gives `name` (`alive`, `failed`, `left`, ...).
    pub fn status_of(&self, name: &str) -> Option<String> {
        self.members()
            .into_iter()
            .find(|m| m.0 == name)
            .map(|m| m.2)
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.scratch.read(LOG)
    }

    /// The lines its event handler logged: `<event> <user event or query name> <payload>`
    /// (none without a handler).
    pub fn handled(&self) -> Vec<String> {
        if !self.handler {
            return Vec::new();
        }
        self.scratch
            .read("events.log")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Kill the agent (no leave).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer for Serf {
    fn name(&self) -> &str {
        &self.name
    }

    fn sees_alive(&self, member: &str) -> bool {
        self.status_of(member).as_deref() == Some("alive")
    }
}

impl Drop for Serf {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where Debian installs memberlist's sources (GOPATH layout).
const GOCODE: &str = "/usr/share/gocode";

/// A Go memberlist member (one `memberlist-peer` process: memberlist 0.2.2 from Debian's
/// `golang-github-hashicorp-memberlist-dev`), killed on drop. Its view is read from the event
/// lines it prints; memberlist's log goes to its [`Scratch`] directory.
#[derive(Debug)]
pub struct GoPeer {
    /// Its member name.
    pub name: String,
    /// Its bind address.
    pub bind: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its view from its event lines: name → `alive` or `gone` (failed or left: memberlist
    /// 0.2.2 does not tell its program which).
    view: Arc<Mutex<HashMap<String, String>>>,
    /// Every line it printed.
    lines: Arc<Mutex<Vec<String>>>,
    scratch: Scratch,
}

impl GoPeer {
    /// The peer program, built once per test process from `interop/memberlist-peer` with the
    /// installed `go` against Debian's memberlist sources; `None` (after saying why) when Go or
    /// memberlist is missing, a panic when CI requires them (`ROOKERY_REQUIRE_MEMBERLIST`).
    pub fn binary() -> Option<&'static Path> {
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
            let gopath =
                std::env::temp_dir().join(format!("rookery-gopath-{}", std::process::id()));
            let src = gopath.join("src/memberlist-peer");
            std::fs::create_dir_all(&src).expect("gopath");
            let main =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/memberlist-peer/main.go");
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

    /// Start a member named `name` joining `join` (none: it starts a cluster), with
    /// memberlist's LAN configuration (`lan`) or its local one; returns once it is up (and
    /// has joined, when told to).
    pub fn start(bin: &Path, name: &str, join: &[SocketAddr], lan: bool) -> GoPeer {
        GoPeer::start_with(bin, name, join, lan, None)
    }

    /// [`GoPeer::start`] encrypting with memberlist's `SecretKey` (`key`: standard base64).
    pub fn start_with(
        bin: &Path,
        name: &str,
        join: &[SocketAddr],
        lan: bool,
        key: Option<&str>,
    ) -> GoPeer {
        let bind = loopback();
        let scratch = Scratch::new("memberlist", name, bind.port());
        let join: Vec<String> = join.iter().map(SocketAddr::to_string).collect();
        let mut child = Command::new(bin)
            .arg(format!("-name={name}"))
            .arg(format!("-bind={bind}"))
            .arg(format!("-join={}", join.join(",")))
            .arg(format!("-lan={lan}"))
            .arg(format!("-key={}", key.unwrap_or("")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(scratch.path(LOG)).expect("log file"))
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
            scratch,
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
    pub fn status_of(&self, name: &str) -> Option<String> {
        self.view.lock().expect("view").get(name).cloned()
    }

    /// Every line it printed so far (its events), one per line.
    pub fn printed(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Memberlist's log so far.
    pub fn log(&self) -> String {
        self.scratch.read(LOG)
    }

    /// Suspicions memberlist logged (it logs each member it starts to suspect).
    pub fn suspicions(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("Suspect"))
            .map(str::to_string)
            .collect()
    }

    /// The error lines memberlist logged.
    pub fn errors(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("[ERR]"))
            .map(str::to_string)
            .collect()
    }

    /// Send `text` (no newline) to the member named `to`: memberlist's `SendReliable` (a
    /// stream user message) when `reliable`, else `SendBestEffort` (a datagram).
    pub fn send(&mut self, to: &str, text: &str, reliable: bool) {
        let stdin = self.stdin.as_mut().expect("running");
        let how = if reliable { "send" } else { "sendbe" };
        writeln!(stdin, "{how} {to} {text}").expect("send command");
        stdin.flush().expect("flush");
    }

    /// A graceful leave (memberlist's `Leave`, then shutdown).
    pub fn leave(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            writeln!(stdin, "leave").expect("leave command");
        }
        let _ = self.child.wait();
    }

    /// Kill the process: no leave.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer for GoPeer {
    fn name(&self) -> &str {
        &self.name
    }

    /// Its events never name itself: it holds itself alive while it runs.
    fn sees_alive(&self, member: &str) -> bool {
        member == self.name || self.status_of(member).as_deref() == Some("alive")
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        self.kill();
    }
}
