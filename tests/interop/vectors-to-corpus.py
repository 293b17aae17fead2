#!/usr/bin/env python3
"""Seed the `hashicorp` fuzz target's corpus from the captured Serf traffic.

Reads core/src/wire/hashicorp/vectors/*.txt (written by capture-serf.py) and writes one corpus
file per distinct input into fuzz/corpus/hashicorp/: mode byte 0 and each datagram, mode 1 and
each stream message, modes 4 and 5 and each sealed datagram and stream message, mode 2 and each Serf message found directly in a datagram (a user message,
with or without the CRC header), and a few mode 3 tag metas. File names are the SHA-1 of the
contents, so rerunning adds only what is new.

Rerun:  python3 tests/interop/vectors-to-corpus.py
"""

import glob
import hashlib
import os

repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
out_dir = os.path.join(repo, "fuzz", "corpus", "hashicorp")
os.makedirs(out_dir, exist_ok=True)
inputs = [bytes([3, 255, 0x80]), bytes([3]) + b"web", bytes([3, 255, 0x81, 0xa1, ord("k"), 0xa1, ord("v")])]
for path in sorted(glob.glob(os.path.join(repo, "core", "src", "wire", "hashicorp", "vectors", "*.txt"))):
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        data = bytes.fromhex(f[-1])
        # Sealed with the key 1..32: the encrypted serf capture, members q and r of memberlist's.
        if f[0] == "udp" and ("encrypted" in path or f[1] in ("q", "r")):
            inputs.append(bytes([4]) + data)
        elif f[0] == "udp":
            inputs.append(bytes([0]) + data)
            body = data[5:] if len(data) >= 5 and data[0] == 12 else data
            if body[:1] == b"\x08":
                inputs.append(bytes([2]) + body[1:])
        elif data[:1] == b"\x0a":
            inputs.append(bytes([5]) + data)
        else:
            inputs.append(bytes([1]) + data)
new = 0
for data in inputs:
    name = os.path.join(out_dir, hashlib.sha1(data).hexdigest())
    if not os.path.exists(name):
        with open(name, "wb") as fh:
            fh.write(data)
        new += 1
print("%d inputs, %d new, in %s" % (len(inputs), new, out_dir))
