#!/bin/bash
# Issue 18: A/B over the whole table (see BENCHMARKS.md, "Issue 18's speed targets, met").
# A = --config memberlist (memberlist's LAN profile = the old lan), B = --config lan; other
# pairs through the environment, e.g. A="--config lan --set revival_check=0" B="--config lan".
# ROWS picks rows (default: the table's); "more" adds partition (30 s, 600 s), mass-restart
# (5 s, 20 s down), moved (0 s, 20 s down), churn and flap.
# Build first: cargo build --release -p rookery-sim; run from the workspace root.
# Each row runs A then B for the same seed, one after the other.
BIN=${BIN:-target/release/rookery-sim}
A=${A:-"--config memberlist"}
B=${B:-"--config lan"}
ROWS=${ROWS:-"join crash steady lossy slow degraded"}
S1=${S1:-"1 2 3 4 5 6 7 8 9 10 11 12"}
S2=${S2:-"1 2 3 4"}
j() { python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(' '.join(str(d.get(k)) for k in sys.argv[1:]))" "$@"; }
run() { # scen seed keys... -- args
  local scen=$1 seed=$2; shift 2; local keys=(); while [ "$1" != "--" ]; do keys+=("$1"); shift; done; shift
  for c in A B; do
    local args=$A; [ $c = B ] && args=$B
    # shellcheck disable=SC2086
    echo "$scen $* seed=$seed $c($args): $($BIN $scen --seed $seed --reliable tcp $args "$@" | j "${keys[@]}" trace_hash)"
  done
}
row() { [[ " $ROWS " == *" $1 "* ]]; }
row join && for s in $S1; do run join $s t_converge_ms --; done
row crash && for s in $S1; do run crash $s t_first_detect_ms t_all_detect_ms --; done
row steady && for s in $S2; do run steady $s bytes_per_node_s packets_per_node_s --; run steady $s bytes_per_node_s packets_per_node_s -- --duration 600; done
row lossy && for l in 0.1 0.2 0.3; do for s in $S2; do run lossy $s false_failed false_suspect bytes_per_node_s -- --loss $l; done; done
row slow && for s in $S2; do run slow $s false_failed_healthy false_failed_slow false_suspect_healthy false_suspect_slow --; done
row degraded && for s in $S2; do run degraded $s healthy_false_failed healthy_false_suspect degraded_failed_verdicts degraded_rejoins degraded_failed_share_first degraded_failed_share_last --; done
row more && for s in $S2; do
  run partition $s t_split_detect_ms t_heal_converge_ms failed_verdicts --
  run partition $s t_split_detect_ms t_heal_converge_ms failed_verdicts -- --duration 600
  for d in 5 20; do run mass-restart $s t_views_correct_ms stale_views failed_verdicts_after_restart -- --downtime $d; done
  for d in 0 20; do run moved $s t_all_know_new_addr_ms name_conflicts gave_up_name stale_views -- --downtime $d; done
  run churn $s false_failed true_failed stale_views stale_views_max --
  run flap $s events_per_observer_per_cycle bytes_per_node_s bytes_per_node_s_at_rest stale_views --
done
