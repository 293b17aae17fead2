#!/usr/bin/env python3
"""Capture real Serf 0.9.4 / memberlist traffic as test vectors for rookery's HashiCorp codec.

Starts three `serf agent` processes on loopback (a, b, c; -profile=local) and, in front of each,
a transparent relay on the address the agent advertises: every UDP datagram and every TCP
stream sent to an agent passes through its relay, which forwards it unchanged and records it.
Then it drives the cluster through the traffic the codec must understand:

  joins (push-pull over TCP, alive gossip, join intents), user events (`serf event`), queries
  with and without filters and a relay factor (`serf query`, answered by an event handler on
  b and c), a key-list and a key-install internal query (no keyring: the members answer with an
  error message), a killed agent (c: indirect pings, nacks, suspect and dead messages), a
  force-leave with prune of c, a name-conflict query (a second agent named `a` joins), and a
  graceful leave (b).

With `--encrypt` every agent runs with `-encrypt` (the AES-256 key of bytes 1 to 32, base64
`AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=`): all traffic is sealed, and the key queries
succeed (the installed key is a second one).

Output (default `core/src/wire/hashicorp/vectors/serf-0.9.4.txt`, with `--encrypt`
`serf-0.9.4-encrypted.txt`): one record per line,
`udp <from> <to> <hex>` for a datagram (`from`/`to` are node names, `?` when the source port
belongs to no agent) and `tcp <conn> <dir> <to> <hex>` for one direction of one TCP connection
(`dir` is `req` for the bytes the connecting side sent and `resp` for the answer). Lines starting
with `#` are comments: the expectations the Rust tests check (node names, tags, event and query
names) are written there too, so the file documents the run that made it.

Rerun:  python3 tests/interop/capture-serf.py [--encrypt] [OUT]   (needs `serf` on PATH; ~40 s)
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
BASE = 17900  # agent i binds BASE+i, its relay listens on BASE+100+i, RPC on BASE+200+i
NODES = [
    ("a", ["role=web", "dc=east"]),
    ("b", ["role=db"]),
    ("c", ["role=db", "rack=r2"]),
]
KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
ENCRYPT = False
# The duplicate-name agent used for the conflict query.
DUP_INDEX = 3

lock = threading.Lock()
records = []
conn_counter = [0]


def bind_port(i):
    return BASE + i


def relay_port(i):
    return BASE + 100 + i


def rpc_port(i):
    return BASE + 200 + i


def name_of_port(port):
    for i, (name, _) in enumerate(NODES):
        if port == bind_port(i):
            return name
    if port == bind_port(DUP_INDEX):
        return "a-dup"
    return "?"


def record(line):
    with lock:
        records.append(line)


def udp_relay(i, name, stop):
    """A UDP proxy: a datagram from X to the relay goes to the agent from a socket kept for X;
    what the agent sends back to that socket goes to X from the relay's address."""
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind((HOST, relay_port(i)))
    upstream = {}  # source addr -> socket towards the agent
    back = {}  # socket -> source addr
    while not stop.is_set():
        socks = [front] + list(back.keys())
        ready, _, _ = select.select(socks, [], [], 0.2)
        for s in ready:
            data, src = s.recvfrom(65535)
            if s is front:
                record("udp %s %s %s" % (name_of_port(src[1]), name, data.hex()))
                up = upstream.get(src)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.bind((HOST, 0))
                    upstream[src] = up
                    back[up] = src
                up.sendto(data, (HOST, bind_port(i)))
            else:
                dst = back[s]
                record("udp %s %s %s" % (name, name_of_port(dst[1]), data.hex()))
                front.sendto(data, dst)


def pipe(src, dst, buf):
    try:
        while True:
            chunk = src.recv(65536)
            if not chunk:
                break
            buf.extend(chunk)
            dst.sendall(chunk)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def tcp_conn(client, i, name):
    with lock:
        conn_counter[0] += 1
        cid = conn_counter[0]
    try:
        agent = socket.create_connection((HOST, bind_port(i)))
    except OSError:
        client.close()
        return
    req, resp = bytearray(), bytearray()
    t1 = threading.Thread(target=pipe, args=(client, agent, req))
    t2 = threading.Thread(target=pipe, args=(agent, client, resp))
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    client.close()
    agent.close()
    if req:
        record("tcp %d req %s %s" % (cid, name, bytes(req).hex()))
    if resp:
        record("tcp %d resp %s %s" % (cid, name, bytes(resp).hex()))


def tcp_relay(i, name, stop):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((HOST, relay_port(i)))
    lst.listen(64)
    lst.settimeout(0.2)
    while not stop.is_set():
        try:
            c, _ = lst.accept()
        except socket.timeout:
            continue
        threading.Thread(target=tcp_conn, args=(c, i, name), daemon=True).start()


def serf(*args, check=True):
    out = subprocess.run(["serf"] + list(args), capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise SystemExit("serf %s failed: %s %s" % (" ".join(args), out.stdout, out.stderr))
    return out.stdout


def rpc(i):
    return "-rpc-addr=%s:%d" % (HOST, rpc_port(i))


def start_agent(i, name, tags, tmp, extra=()):
    args = [
        "serf", "agent",
        "-node=" + name,
        "-bind=%s:%d" % (HOST, bind_port(i)),
        "-advertise=%s:%d" % (HOST, relay_port(i)),
        "-rpc-addr=%s:%d" % (HOST, rpc_port(i)),
        "-profile=local",
        "-log-level=debug",
    ]
    for t in tags:
        args.append("-tag=" + t)
    if ENCRYPT:
        args.append("-encrypt=" + KEY)
    args.extend(extra)
    log = open(os.path.join(tmp, "agent-%s-%d.log" % (name, i)), "w")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def main():
    global ENCRYPT
    args = sys.argv[1:]
    if args[:1] == ["--encrypt"]:
        ENCRYPT = True
        args = args[1:]
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    name = "serf-0.9.4-encrypted.txt" if ENCRYPT else "serf-0.9.4.txt"
    out = args[0] if args else os.path.join(repo, "core", "src", "wire", "hashicorp", "vectors", name)
    if shutil.which("serf") is None:
        raise SystemExit("serf is not installed (apt-get install serf)")
    version = subprocess.run(["serf", "version"], capture_output=True, text=True).stdout.split("\n")[0]
    tmp = tempfile.mkdtemp(prefix="serf-capture-")
    stop = threading.Event()
    threads = []
    for i, (name, _) in enumerate(NODES + [("a-dup", [])]):
        for f in (udp_relay, tcp_relay):
            t = threading.Thread(target=f, args=(i, name, stop), daemon=True)
            t.start()
            threads.append(t)
    # An event handler that answers queries: prints the query name and payload.
    handler = os.path.join(tmp, "handler.sh")
    with open(handler, "w") as f:
        f.write("#!/bin/sh\necho \"answer from $SERF_SELF_NAME to $SERF_QUERY_NAME: $(cat)\"\n")
    os.chmod(handler, 0o755)
    procs = {}
    try:
        for i, (name, tags) in enumerate(NODES):
            extra = ["-event-handler=query=" + handler] if name != "a" else []
            procs[name] = start_agent(i, name, tags, tmp, extra)
        time.sleep(1.5)
        serf("join", rpc(0), "%s:%d" % (HOST, relay_port(1)))
        serf("join", rpc(2), "%s:%d" % (HOST, relay_port(0)))
        time.sleep(3)
        serf("event", rpc(0), "deploy", "v1.2.3")
        serf("event", rpc(1), "-coalesce=false", "restart", "")
        time.sleep(1)
        serf("query", rpc(0), "-timeout=2s", "uptime", "how long")
        serf("query", rpc(1), "-timeout=2s", "-node=c", "-tag=role=d.*", "-relay-factor=1",
             "filtered", "x")
        serf("query", rpc(2), "-timeout=2s", "-no-ack", "quiet", "")
        serf("keys", rpc(0), "-list", check=False)
        serf("keys", rpc(0), "-install=T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=", check=False)
        time.sleep(1)
        procs["c"].send_signal(signal.SIGKILL)
        procs["c"].wait()
        time.sleep(8)
        serf("force-leave", rpc(0), "-prune", "c", check=False)
        time.sleep(1)
        # A second agent named `a` joins through b: b sees a conflict and asks the cluster.
        procs["a-dup"] = start_agent(DUP_INDEX, "a", [], tmp)
        time.sleep(1.5)
        serf("join", rpc(DUP_INDEX), "%s:%d" % (HOST, relay_port(1)), check=False)
        time.sleep(3)
        procs["a-dup"].send_signal(signal.SIGKILL)
        procs["a-dup"].wait()
        serf("leave", rpc(1), check=False)
        time.sleep(2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=2)
        time.sleep(0.5)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with lock:
        lines = list(records)
    with open(out, "w") as f:
        f.write("# Traffic between serf agents, captured by tests/interop/capture-serf.py\n")
        f.write("# %s, memberlist protocol 2..5, -profile=local, loopback, %s\n" % (
            version, "-encrypt=" + KEY if ENCRYPT else "no encryption"))
        f.write("# agents: a tags role=web,dc=east; b tags role=db; c tags role=db,rack=r2\n")
        f.write("# events: deploy=v1.2.3 (coalesce), restart (no coalesce, empty payload)\n")
        f.write("# queries: uptime, filtered (node c, tag role=d.*, relay factor 1), quiet (no ack),\n")
        f.write("#   _serf_list-keys, _serf_install-key, _serf_conflict (payload a)\n")
        f.write("# c killed (suspect, dead, nacks), force-leave -prune c, b leaves gracefully\n")
        for line in lines:
            f.write(line + "\n")
    print("wrote %d records to %s (agent logs in %s)" % (len(lines), out, tmp))


if __name__ == "__main__":
    main()
