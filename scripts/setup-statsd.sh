#!/usr/bin/env bash
# Installs the Etsy statsd daemon (npm package `statsd`) under target/statsd of this
# repository, for the StatsD end-to-end test (tests/statsd_etsy.rs). Idempotent: when the
# daemon is already there it does nothing and returns at once.
#
#   scripts/setup-statsd.sh
#
# Needs Node.js and npm on PATH. Environment: STATSD_VERSION (default 0.9.0) picks the
# package version.
set -euo pipefail

cd "$(dirname "$0")/.."
prefix="target/statsd"
main="$prefix/node_modules/statsd/stats.js"
version="${STATSD_VERSION:-0.9.0}"

fail() {
    echo "setup-statsd.sh: error: $*" >&2
    exit 1
}

installed_version() {
    node -e 'console.log(require(process.argv[1]).version)' "$PWD/$prefix/node_modules/statsd/package.json" 2>/dev/null
}

command -v node >/dev/null 2>&1 || fail "no 'node' on PATH: install Node.js 16+ (and npm)"

if [ -f "$main" ] && [ "$(installed_version)" = "$version" ]; then
    echo "setup-statsd.sh: $prefix has statsd $version; nothing to do"
    exit 0
fi

command -v npm >/dev/null 2>&1 || fail "no 'npm' on PATH: install npm"
mkdir -p "$prefix"
echo "setup-statsd.sh: npm install statsd@$version into $prefix"
# --ignore-scripts: the optional syslog module needs a C toolchain; the test logs to stdout.
npm install --prefix "$prefix" --no-audit --no-fund --ignore-scripts --silent "statsd@$version" \
    || fail "npm install statsd@$version into $prefix failed (is the package registry reachable?)"

[ -f "$main" ] || fail "after installing, $main is missing"
echo "setup-statsd.sh: installed statsd $(installed_version) into $prefix"
