#!/usr/bin/env bash
# Installs and starts the system parts reflectgym uses: Chromium (web envs) and, through
# scripts/sandbox/setup_system.sh, bubblewrap and a Docker engine (sandboxes).
# Usage: setup_system.sh [all|browser]   (default: all). Idempotent; as root with apt-get it installs what is
# missing, otherwise it says what is missing and the tests that need it skip with that reason.
set -uo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

# chromium-headless-shell (Debian) is what the web envs prefer: no window UI per page, half the CPU per
# context; the full chromium is the fallback and what the headed/screenshot paths can use.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromium-headless-shell >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-headless-shell (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-headless-shell; } \
      >/dev/null || echo "setup: apt-get could not install chromium; browser tests will skip"
  else
    echo "setup: no chromium; install it (sudo apt-get install chromium chromium-headless-shell, or" \
      "playwright install chromium) or the browser tests skip"
  fi
fi

if [ "$what" = all ]; then
  bash scripts/sandbox/setup_system.sh || echo "setup: sandbox system setup failed; docker/bwrap tests will skip"
fi
exit 0
