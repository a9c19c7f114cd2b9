#!/usr/bin/env bash
# Runs every test of volley on a fresh machine. What the tests need beyond the Rust
# toolchain is installed into folders of this repository (under target/), never globally.
#
#   scripts/test.sh
#
# Steps: format and lint, the Python interop peers (venv under target/), unit + model +
# fuzz-smoke + integration + interop tests (debug, with overflow checks), the stress
# tests in release, the loom model checks, the multicast examples on loopback and the
# multicast test across network namespaces (root only, skipped otherwise), and the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lint (cargo clippy --all-targets -D warnings)"
cargo clippy --all-targets -- -D warnings

step "API docs build without broken links (cargo doc -D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib

step "interop peers: pyzmq and standardwebhooks in a venv under target/"
bash scripts/setup-python.sh

step "interop peer: the Etsy statsd daemon (npm) under target/statsd"
bash scripts/setup-statsd.sh

step "unit, model, fuzz-smoke, integration and pyzmq interop tests"
VOLLEY_REQUIRE_INTEROP=1 cargo test

step "stress tests, release build"
cargo test --release --test ring_stress

step "loom model checks of the lock-free paths"
# Own target dir: --cfg loom changes every crate's build. Preemptions are bounded so the
# exploration finishes in seconds; the tests use capacities of 1 and 2.
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
    cargo test --release --lib --target-dir target/loom ring::loom_tests

step "multicast examples on loopback with injected loss (delivered + lost == sent)"
cargo build --release --bin volley --example mcast_pub --example mcast_sub
bash scripts/mcast-examples.sh

step "multicast between hosts: network namespaces over a veth bridge (root only)"
bash scripts/netns-mcast.sh target/release/volley

step "demo"
cargo run --release -- demo

echo
echo "scripts/test.sh: all steps passed"
