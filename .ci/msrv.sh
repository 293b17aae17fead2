#!/usr/bin/env bash
# The workspace builds on its declared MSRV (`rust-version` in Cargo.toml). When the default
# toolchain is that version, the rest of the gate (clippy, the tests) already builds every
# crate on it and this only says so; otherwise the workspace is checked with that toolchain
# (installed through rustup if the registry allows). The declared version is the lowest one
# this gate can verify: no older toolchain can be fetched on the build machines.
set -euo pipefail
cd "$(dirname "$0")/.."
msrv=$(sed -n '/^rust-version = /{s/^rust-version = "\(.*\)"/\1/p;q}' Cargo.toml)
have=$(rustc --version | awk '{print $2}')
if [[ "$have" == "$msrv" || "$have" == "$msrv".* ]]; then
    echo "msrv: the default toolchain is rustc $have, the declared MSRV $msrv: the gate builds on it"
    exit 0
fi
echo "msrv: default rustc $have, declared MSRV $msrv: checking the workspace with $msrv"
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    rustup toolchain install --profile minimal "$msrv"
fi
cargo +"$msrv" check --workspace --all-targets
