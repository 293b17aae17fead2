#!/bin/bash
# Issue 18: A/B over the whole table (see BENCHMARKS.md, "Issue 18's speed targets, met").
# A = --config memberlist (memberlist's LAN profile = the old lan), B = --config lan.
# Build first: cargo build --release -p rookery-sim; run from the workspace root.
# Each row runs A then B for the same seed, one after the other.
B=${BIN:-target/release/rookery-sim}
S1=${S1:-"1 2 3 4 5 6 7 8 9 10 11 12"}
S2=${S2:-"1 2 3 4"}
j() { python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(' '.join(str(d.get(k)) for k in sys.argv[1:]))" "$@"; }
run() { # scen seed keys... -- args
  local scen=$1 seed=$2; shift 2; local keys=(); while [ "$1" != "--" ]; do keys+=("$1"); shift; done; shift
  for c in memberlist lan; do echo "$scen $* seed=$seed $c: $($B $scen --seed $seed --reliable tcp --config $c "$@" | j "${keys[@]}" trace_hash)"; done
}
for s in $S1; do run join $s t_converge_ms --; done
for s in $S1; do run crash $s t_first_detect_ms t_all_detect_ms --; done
for s in $S2; do run steady $s bytes_per_node_s packets_per_node_s --; run steady $s bytes_per_node_s packets_per_node_s -- --duration 600; done
for l in 0.1 0.2 0.3; do for s in $S2; do run lossy $s false_failed false_suspect bytes_per_node_s -- --loss $l; done; done
for s in $S2; do run slow $s false_failed_healthy false_failed_slow false_suspect_healthy false_suspect_slow --; done
for s in $S2; do run degraded $s healthy_false_failed healthy_false_suspect degraded_failed_verdicts degraded_rejoins degraded_failed_share_first degraded_failed_share_last --; done
