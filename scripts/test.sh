#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k routing
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# tests/nni_capsnas/test_remote_workers.py starts its own SSH server on 127.0.0.1: it needs
# OpenSSH's sshd. Installed here when missing (as root, with apt); policy-rc.d keeps the
# package from starting a system-wide sshd on port 22.
if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing openssh-server for the remote-worker test"
        added_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
            added_policy=1
        fi
        status=0
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; } \
            || status=$?
        [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
        [ "$status" = 0 ] || { echo "test: installing openssh-server failed (exit $status)" >&2; exit 1; }
        [ -x /usr/sbin/sshd ] || { echo "test: /usr/sbin/sshd still missing after installing openssh-server" >&2; exit 1; }
    else
        echo "test: /usr/sbin/sshd is missing and cannot be installed here (needs root and apt-get):" \
             "install openssh-server (e.g. sudo apt-get install openssh-server); the remote-worker test needs it" >&2
        exit 1
    fi
fi

# The web UI test (tests/nni_capsnas/test_webui.py) drives headless Chromium.
# Idempotent: installs it once, with apt, when running as root; otherwise says what to do.
CHROMIUM="${NNI_CAPSNAS_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing chromium for the web UI test (apt-get)"
        { apt-get update -qq >/dev/null \
              && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                 chromium fonts-dejavu-core >/dev/null; } \
            || { echo "test: installing chromium failed; see apt's messages above" >&2; exit 1; }
    else
        echo "test: $CHROMIUM is missing and cannot be installed here (needs root and apt-get):" \
             "install Chromium (e.g. 'sudo apt-get install chromium') or set NNI_CAPSNAS_CHROMIUM" >&2
        exit 1
    fi
    [ -x "$CHROMIUM" ] || { echo "test: $CHROMIUM still missing after installing chromium" >&2; exit 1; }
fi
export NNI_CAPSNAS_CHROMIUM="$CHROMIUM"

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec .venv/bin/python -m pytest -q "$@"
