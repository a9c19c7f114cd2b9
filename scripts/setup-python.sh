#!/usr/bin/env bash
# Creates the Python environment the pyzmq interop tests use, under target/venv of this
# repository, and installs pyzmq and standardwebhooks into it. Idempotent: when the venv
# already imports both packages it does nothing and returns at once.
#
#   scripts/setup-python.sh
#
# Environment: PYTHON (default python3) picks the interpreter that creates the venv.
set -euo pipefail

cd "$(dirname "$0")/.."
venv="target/venv"
py="$venv/bin/python"
packages=(pyzmq standardwebhooks)

fail() {
    echo "setup-python.sh: error: $*" >&2
    exit 1
}

have_all() {
    [ -x "$py" ] && "$py" -c 'import zmq, standardwebhooks' >/dev/null 2>&1
}

if have_all; then
    echo "setup-python.sh: $venv is ready (pyzmq $("$py" -c 'import zmq; print(zmq.pyzmq_version(), "/ libzmq", zmq.zmq_version())'), standardwebhooks present); nothing to do"
    exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || fail "no '$python' on PATH: install Python 3.8+ (with its venv module)"

if [ ! -x "$py" ]; then
    echo "setup-python.sh: creating venv $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    mkdir -p target
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        fail "'$python -m venv' failed (on Debian: apt-get install python3-venv)"
    fi
else
    echo "setup-python.sh: reusing venv $venv (a package is missing)"
fi

echo "setup-python.sh: pip install ${packages[*]}"
"$py" -m pip install --disable-pip-version-check --quiet "${packages[@]}" \
    || fail "pip install ${packages[*]} into $venv failed (is the package registry reachable?)"

have_all || fail "after installing, '$py -c \"import zmq, standardwebhooks\"' still fails"
echo "setup-python.sh: installed into $venv: pyzmq $("$py" -c 'import zmq; print(zmq.pyzmq_version(), "/ libzmq", zmq.zmq_version())'), standardwebhooks"
