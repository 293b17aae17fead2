#!/usr/bin/env bash
# Run every fuzz target for a short, fixed time when a nightly toolchain is present.
#
#   bash fuzz/run-ci.sh            # 30 s per target
#   FUZZ_SECONDS=60 bash fuzz/run-ci.sh
#
# Skips (exit 0, saying so) when there is no nightly toolchain or cargo-fuzz cannot be
# installed. Installs cargo-fuzz with `cargo install cargo-fuzz` when it is missing. Fails
# (exit 1) when a target finds a crash; the crash input is left under fuzz/artifacts/<target>/
# and should be fixed, then kept under fuzz/regressions/<target>/.
#
# Runs one job at a time (-jobs=1 -workers=1). New corpus entries are written to a scratch
# folder, not to the committed corpus.
set -euo pipefail

cd "$(dirname "$0")"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
TARGETS=(decode node cluster seal hashicorp)

if ! rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null; then
    echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain list has none); the corpus is still replayed by cargo test"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz missing, installing it (cargo install cargo-fuzz)"
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz: SKIPPED: cargo-fuzz could not be installed"
        exit 0
    fi
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$scratch/$t"
    echo "fuzz: running $t for ${SECONDS_PER_TARGET}s"
    # Scratch corpus first (receives new entries), committed corpus and regressions read only.
    dirs=("$scratch/$t")
    for d in "corpus/$t" "regressions/$t"; do
        if [ -d "$d" ]; then dirs+=("$d"); fi
    done
    if cargo +nightly fuzz run "$t" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -workers=1 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        echo "fuzz: $t passed"
    else
        # With -jobs, libFuzzer writes the worker's output to fuzz-0.log.
        tail -n 60 "$scratch/$t.log" fuzz-0.log 2>/dev/null || true
        echo "fuzz: $t FAILED (crash input under fuzz/artifacts/$t/)"
        status=1
    fi
    if [ -f fuzz-0.log ]; then
        grep -E 'cov:' fuzz-0.log | tail -1 || true
        rm -f fuzz-0.log
    fi
done
exit "$status"
