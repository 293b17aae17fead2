//! Multi-host: three agent processes (tokio, mio, async-std) in their own network namespaces,
//! joined by veth pairs to a bridge in a hub namespace. One host is cut off with
//! `ip link set … down`, detected as failed on both sides, then the link is healed and the
//! cluster merges again.
//!
//! Needs root (or CAP_NET_ADMIN) and the `ip` tool; elsewhere it prints why and skips.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
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

/// The namespaces of this test run; deleted (with their links and processes) on drop.
struct Topology {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
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

    fn build() -> Result<Topology, String> {
        let mut t = Topology {
            prefix: format!("rk{}", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let hub = t.hub();
        ip(&["netns", "add", &hub])?;
        t.namespaces.push(hub.clone());
        in_ns(&hub, &["link", "set", "lo", "up"])?;
        in_ns(&hub, &["link", "add", "br0", "type", "bridge"])?;
        in_ns(&hub, &["link", "set", "br0", "up"])?;
        for i in 0..HOSTS.len() {
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

    fn spawn_nodes(&mut self, views: &Views) {
        let bin = env!("CARGO_BIN_EXE_rookery-test-node");
        for (i, (name, driver)) in HOSTS.iter().enumerate() {
            let bind = format!("{}:{PORT}", Self::addr(i));
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &self.host(i), bin])
                .args(["--driver", driver, "--name", name, "--bind", &bind]);
            for j in 0..HOSTS.len() {
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
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
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
    let mut topo = match Topology::build() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED netns_partitioned_host_detected_then_healed: network namespaces are not available here ({e}); run as root with iproute2 to include it");
            return;
        }
    };
    let views: Views = Arc::default();
    topo.spawn_nodes(&views);
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
