//! Multi-host: agent processes in their own network namespaces, joined by veth pairs to a
//! bridge in a hub namespace. Three rookery agents (tokio, mio, async-std): one host is cut
//! off with `ip link set … down`, detected as failed on both sides, then the link is healed
//! and the cluster merges again. A mixed cluster of `serf` agents and rookery agents speaking
//! the HashiCorp profile: a serf host and a rookery host cut off, failed on every side, healed
//! and merged.
//!
//! Needs root (or CAP_NET_ADMIN) and the `ip` tool; elsewhere it prints why and skips, unless
//! `ROOKERY_REQUIRE_NETNS` is set (`.ci/run` sets it where namespaces work) to make that a
//! failure. The mixed test needs `serf` too (skipped without it unless `ROOKERY_REQUIRE_SERF`
//! is set).
//!
//! With `ROOKERY_NETNS_LOGS=DIR`, each run keeps its logs in a fresh directory under `DIR`:
//! every serf agent's debug log, every rookery agent's `tracing` output (debug, or the level in
//! `ROOKERY_NODE_LOG`), and `views.log`, each host's view whenever it changes.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rookery_tests::scenarios::wait_until;

type Views = Arc<Mutex<HashMap<String, HashMap<String, String>>>>;

/// Where a run keeps its logs (`ROOKERY_NETNS_LOGS`), and the view changes it has seen.
#[derive(Clone)]
struct Logs {
    dir: Option<PathBuf>,
    views: Option<Arc<Mutex<File>>>,
    start: Instant,
}

impl Logs {
    fn new(test: &str) -> Logs {
        let dir = std::env::var_os("ROOKERY_NETNS_LOGS").map(|d| {
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let dir = PathBuf::from(d).join(format!("{test}-{stamp}"));
            std::fs::create_dir_all(&dir).expect("log directory");
            eprintln!("netns: logs in {}", dir.display());
            dir
        });
        let views = dir.as_ref().map(|d| {
            Arc::new(Mutex::new(
                File::create(d.join("views.log")).expect("views.log"),
            ))
        });
        Logs {
            dir,
            views,
            start: Instant::now(),
        }
    }

    /// A file for one process's output, or nowhere without a log directory.
    fn file(&self, name: &str) -> Stdio {
        match &self.dir {
            Some(d) => File::create(d.join(name)).expect("log file").into(),
            None => Stdio::null(),
        }
    }

    /// Notes a step of the test in `views.log` (and on standard error).
    fn note(&self, what: &str) {
        eprintln!("netns: {what}");
        if let Some(f) = &self.views {
            let _ = writeln!(
                f.lock().expect("views.log"),
                "{} {:>9.3}s --- {what}",
                wall_clock(),
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Records `viewer`'s view, noting it in `views.log` when it changed.
    fn record(&self, views: &Views, viewer: &str, members: HashMap<String, String>) {
        let mut all = views.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = &self.views {
            if all.get(viewer) != Some(&members) {
                let sorted: BTreeMap<_, _> = members.iter().collect();
                let _ = writeln!(
                    f.lock().expect("views.log"),
                    "{} {:>9.3}s {viewer}: {sorted:?}",
                    wall_clock(),
                    self.start.elapsed().as_secs_f64()
                );
            }
        }
        all.insert(viewer.to_string(), members);
    }
}

/// Seconds since the epoch with milliseconds, UTC, to line views up with the agents' logs.
fn wall_clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis()
    )
}

const HOSTS: [(&str, &str); 3] = [("h0", "tokio"), ("h1", "mio"), ("h2", "async-std")];
const PORT: u16 = 7946;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, "ip"];
    all.extend_from_slice(args);
    ip(&all)
}

/// One host's agent process.
#[derive(Clone, Copy)]
enum Host {
    /// `rookery-test-node` with this driver and `--wire` profile.
    Rookery(&'static str, &'static str),
    /// A `serf agent` (local profile), joining the first host unless it is the first.
    Serf,
}

/// The namespaces of this test run; deleted (with their links and processes) on drop.
struct Topology {
    prefix: String,
    hosts: usize,
    namespaces: Vec<String>,
    children: Vec<Child>,
    /// Tells the threads polling serf agents to stop.
    stop: Arc<AtomicBool>,
    logs: Logs,
}

impl Topology {
    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix)
    }

    fn addr(i: usize) -> String {
        format!("10.77.0.{}", i + 1)
    }

    /// A hub and `hosts` host namespaces; `tag` keeps concurrent tests' names apart.
    fn build(tag: &str, hosts: usize, logs: Logs) -> Result<Topology, String> {
        let mut t = Topology {
            prefix: format!("rk{}{tag}", std::process::id()),
            hosts,
            namespaces: Vec::new(),
            children: Vec::new(),
            stop: Arc::default(),
            logs,
        };
        let hub = t.hub();
        ip(&["netns", "add", &hub])?;
        t.namespaces.push(hub.clone());
        in_ns(&hub, &["link", "set", "lo", "up"])?;
        in_ns(&hub, &["link", "add", "br0", "type", "bridge"])?;
        in_ns(&hub, &["link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let host = t.host(i);
            ip(&["netns", "add", &host])?;
            t.namespaces.push(host.clone());
            let port = format!("veth{i}");
            in_ns(
                &hub,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &host,
                ],
            )?;
            in_ns(&hub, &["link", "set", &port, "master", "br0"])?;
            in_ns(&hub, &["link", "set", &port, "up"])?;
            in_ns(&host, &["link", "set", "lo", "up"])?;
            let cidr = format!("{}/24", Self::addr(i));
            in_ns(&host, &["addr", "add", &cidr, "dev", "eth0"])?;
            in_ns(&host, &["link", "set", "eth0", "up"])?;
        }
        Ok(t)
    }

    fn set_link(&self, i: usize, up: bool) {
        self.logs
            .note(&format!("h{i} link {}", if up { "up" } else { "down" }));
        let port = format!("veth{i}");
        in_ns(
            &self.hub(),
            &["link", "set", &port, if up { "up" } else { "down" }],
        )
        .expect("set link");
    }

    /// Start `hosts[i]` named `h<i>` in host `i`, each reporting its view into `views`.
    fn spawn(&mut self, hosts: &[Host], views: &Views) {
        assert_eq!(hosts.len(), self.hosts);
        for (i, host) in hosts.iter().enumerate() {
            self.spawn_host(i, *host, views);
        }
    }

    /// Start `host` named `h<i>` in host `i`, reporting its view into `views`.
    fn spawn_host(&mut self, i: usize, host: Host, views: &Views) {
        assert!(i < self.hosts);
        match host {
            Host::Rookery(driver, wire) => self.spawn_rookery(i, driver, wire, views),
            Host::Serf => self.spawn_serf(i, views),
        }
    }

    fn spawn_rookery(&mut self, i: usize, driver: &str, wire: &str, views: &Views) {
        let bin = env!("CARGO_BIN_EXE_rookery-test-node");
        let name = format!("h{i}");
        let bind = format!("{}:{PORT}", Self::addr(i));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(i), bin])
            .args(["--driver", driver, "--name", &name, "--bind", &bind])
            .args(["--wire", wire]);
        for j in 0..self.hosts {
            cmd.args(["--seed", &format!("{}:{PORT}", Self::addr(j))]);
        }
        let stderr = if self.logs.dir.is_some() {
            if std::env::var_os("ROOKERY_NODE_LOG").is_none() {
                cmd.env("ROOKERY_NODE_LOG", "debug");
            }
            self.logs.file(&format!("{name}.rookery.log"))
        } else {
            Stdio::inherit()
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn node process");
        let stdout = child.stdout.take().expect("stdout");
        let (views, logs) = (views.clone(), self.logs.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let name = v["name"].as_str().unwrap_or_default().to_string();
                let members = v["members"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, s)| (k.clone(), s.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                logs.record(&views, &name, members);
            }
        });
        self.children.push(child);
    }

    /// A `serf agent` in host `i` (joining host 0, retried every second, unless it is host 0);
    /// a thread asks it for
    /// `serf members` every 200 ms and records statuses as rookery prints them (`Alive`,
    /// `Failed`, `Left`).
    fn spawn_serf(&mut self, i: usize, views: &Views) {
        let ns = self.host(i);
        let name = format!("h{i}");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "serf", "agent"])
            .arg(format!("-node={name}"))
            .arg(format!("-bind={}:{PORT}", Self::addr(i)))
            .args(["-rpc-addr=127.0.0.1:7373", "-profile=local"]);
        if self.logs.dir.is_some() {
            cmd.arg("-log-level=debug");
        }
        if i > 0 {
            // -retry-join, not -join: host 0's agent may not listen yet, and a failed -join
            // makes `serf agent` exit.
            cmd.arg(format!("-retry-join={}:{PORT}", Self::addr(0)))
                .arg("-retry-interval=1s");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(self.logs.file(&format!("{name}.serf.log")))
            .stderr(self.logs.file(&format!("{name}.serf.err")))
            .spawn()
            .expect("spawn serf agent");
        self.children.push(child);
        let (views, stop, logs) = (views.clone(), self.stop.clone(), self.logs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("ip")
                    .args(["netns", "exec", &ns, "serf", "members"])
                    .args(["-rpc-addr=127.0.0.1:7373", "-format=json"])
                    .output();
                if let Ok(out) = out {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                        let members = v["members"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|m| {
                                        let status = m["status"].as_str().unwrap_or("");
                                        let mut c = status.chars();
                                        let status = c
                                            .next()
                                            .map(|f| f.to_uppercase().chain(c).collect())
                                            .unwrap_or_default();
                                        (m["name"].as_str().unwrap_or("").to_string(), status)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        logs.record(&views, &name, members);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        for c in &mut self.children {
            let _ = wait_until(Duration::from_secs(3), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn status(views: &Views, viewer: &str, member: &str) -> Option<String> {
    views
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(viewer)?
        .get(member)
        .cloned()
}

/// Every host's view, sorted, for a failure message (the lock is released before it panics).
fn dump(views: &Views) -> String {
    let all = views.lock().unwrap_or_else(PoisonError::into_inner);
    let sorted: BTreeMap<_, BTreeMap<_, _>> =
        all.iter().map(|(v, m)| (v, m.iter().collect())).collect();
    format!("{sorted:?}")
}

fn all_see(views: &Views, viewers: &[&str], members: &[&str], want: &str) -> bool {
    viewers.iter().all(|v| {
        members
            .iter()
            .all(|m| status(views, v, m).as_deref() == Some(want))
    })
}

#[test]
fn netns_partitioned_host_detected_then_healed() {
    let logs = Logs::new("partitioned");
    let mut topo = match Topology::build("", HOSTS.len(), logs.clone()) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                std::env::var_os("ROOKERY_REQUIRE_NETNS").is_none(),
                "ROOKERY_REQUIRE_NETNS is set but network namespaces are not available: {e}"
            );
            eprintln!("SKIPPED netns_partitioned_host_detected_then_healed: network namespaces are not available here ({e}); run as root with iproute2 to include it");
            return;
        }
    };
    let views: Views = Arc::default();
    let hosts: Vec<Host> = HOSTS
        .iter()
        .map(|(_, driver)| Host::Rookery(driver, "native"))
        .collect();
    topo.spawn(&hosts, &views);
    let names: Vec<&str> = HOSTS.iter().map(|(n, _)| *n).collect();
    let limit = Duration::from_secs(30);

    let (ok, took) = wait_until(limit, || all_see(&views, &names, &names, "Alive"));
    assert!(ok, "hosts did not converge: {:?}", dump(&views));
    logs.note(&format!("3 hosts converged in {took:?}"));

    // Cut h2 off: its veth's bridge end goes down.
    topo.set_link(2, false);
    let (ok, took) = wait_until(limit, || {
        all_see(&views, &["h0", "h1"], &["h2"], "Failed")
            && all_see(&views, &["h2"], &["h0", "h1"], "Failed")
            && all_see(&views, &["h0", "h1"], &["h0", "h1"], "Alive")
    });
    assert!(ok, "cut-off host not detected: {:?}", dump(&views));
    logs.note(&format!("cut-off host detected on both sides in {took:?}"));

    topo.set_link(2, true);
    let (ok, took) = wait_until(limit, || all_see(&views, &names, &names, "Alive"));
    assert!(ok, "partition did not heal: {:?}", dump(&views));
    logs.note(&format!("healed, all alive again in {took:?}"));
}

/// A mixed cluster across namespaces: `serf` agents in h0 and h2, rookery agents speaking the
/// HashiCorp profile in h1 (tokio) and h3 (async-std). h2 (serf) and h3 (rookery) are cut off
/// at once: every side marks the other failed; healed, the cluster merges with no operator
/// (the rookery agents re-join their seeds while one of them is not a live member, serf agents
/// by their own push-pull and reconnect and by hearing the rookery agents again). The rookery
/// agents start first, so the test also proves that the serf agents coming up later are
/// joined.
#[test]
fn netns_mixed_serf_cluster_partition_heals() {
    let serf = Command::new("serf")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !serf {
        assert!(
            std::env::var_os("ROOKERY_REQUIRE_SERF").is_none(),
            "ROOKERY_REQUIRE_SERF is set but `serf` does not run (apt-get install serf)"
        );
        eprintln!("SKIPPED netns_mixed_serf_cluster_partition_heals: `serf` is not installed");
        return;
    }
    let hosts = [
        Host::Serf,
        Host::Rookery("tokio", "hashicorp"),
        Host::Serf,
        Host::Rookery("async-std", "hashicorp"),
    ];
    let logs = Logs::new("mixed");
    let mut topo = match Topology::build("m", hosts.len(), logs.clone()) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                std::env::var_os("ROOKERY_REQUIRE_NETNS").is_none(),
                "ROOKERY_REQUIRE_NETNS is set but network namespaces are not available: {e}"
            );
            eprintln!("SKIPPED netns_mixed_serf_cluster_partition_heals: network namespaces are not available here ({e}); run as root with iproute2 to include it");
            return;
        }
    };
    let views: Views = Arc::default();
    let names = ["h0", "h1", "h2", "h3"];
    // Joining and healing rest on timers of a second (the rookery agents' re-joins, the serf
    // agents' -retry-interval) and, for what gossip misses, on push-pull: every 15 s with
    // `-profile=local` (memberlist's local configuration; `Config::local()` alike), and Serf's
    // reconnect to a failed member every 30 s. 60 s is four push-pull intervals and two
    // reconnect intervals; ~1 s is measured for each.
    let limit = Duration::from_secs(60);
    // The rookery agents start first and pair up before either serf agent listens: the start-up
    // order that, left to chance, split the cluster into two pairs for good (the serf agents
    // join only h0, and no protocol merges two clusters that know nothing of each other). The
    // rookery agents keep joining their seeds until each is a member, so the pairs merge.
    topo.spawn_host(1, hosts[1], &views);
    topo.spawn_host(3, hosts[3], &views);
    let (ok, _) = wait_until(limit, || {
        all_see(&views, &["h1", "h3"], &["h1", "h3"], "Alive")
    });
    assert!(ok, "rookery hosts did not pair up: {:?}", dump(&views));
    logs.note("mixed: rookery hosts paired; starting the serf hosts");
    topo.spawn_host(0, hosts[0], &views);
    topo.spawn_host(2, hosts[2], &views);
    let (ok, took) = wait_until(limit, || all_see(&views, &names, &names, "Alive"));
    assert!(ok, "mixed hosts did not converge: {:?}", dump(&views));
    logs.note(&format!(
        "mixed: 2 serf + 2 rookery hosts converged in {took:?}"
    ));

    topo.set_link(2, false);
    topo.set_link(3, false);
    // The cut-off hosts fail their three peers one probe at a time, the rookery one slowed
    // by Lifeguard (each missed ack raises its probe interval): ~35 s measured here.
    let (ok, took) = wait_until(Duration::from_secs(120), || {
        all_see(&views, &["h0", "h1"], &["h2", "h3"], "Failed")
            && all_see(&views, &["h0", "h1"], &["h0", "h1"], "Alive")
            && all_see(&views, &["h2"], &["h0", "h1", "h3"], "Failed")
            && all_see(&views, &["h3"], &["h0", "h1", "h2"], "Failed")
    });
    assert!(
        ok,
        "cut-off hosts not failed on every side: {:?}",
        dump(&views)
    );
    logs.note(&format!(
        "mixed: cut-off serf and rookery hosts failed on every side in {took:?}"
    ));

    topo.set_link(2, true);
    topo.set_link(3, true);
    // A serf agent that still holds a healed host failed once the rookery agents stop
    // re-joining learns better by push-pull: its exchange shows a peer the stale verdict (taken
    // as a suspicion, so the accused refutes with a new incarnation), the next exchange at the
    // latest brings the refutation back; two push-pull intervals, well inside `limit`.
    let (ok, took) = wait_until(limit, || all_see(&views, &names, &names, "Alive"));
    assert!(ok, "mixed partition did not heal: {:?}", dump(&views));
    logs.note(&format!(
        "mixed: healed, all alive again on every host in {took:?}"
    ));
}
