#!/usr/bin/env bash
# Installs and starts the system parts the tests use: Chromium (web envs), bubblewrap (sandbox) and a Docker
# engine (container sandbox). Idempotent; as root with apt-get it installs, otherwise it says what is missing
# and the tests that need it skip with that reason.
set -uo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || echo "setup: apt-get could not install ${need[*]}; tests that need them will skip"
  else
    echo "setup: missing ${need[*]}; install them (e.g. sudo apt-get install ${need[*]}) or the tests that need them skip"
  fi
fi

if [ -x scripts/sandbox/setup_system.sh ] || [ -f scripts/sandbox/setup_system.sh ]; then
  bash scripts/sandbox/setup_system.sh || echo "setup: sandbox system setup failed; docker/bwrap tests will skip"
fi
exit 0
