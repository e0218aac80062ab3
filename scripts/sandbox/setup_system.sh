#!/usr/bin/env bash
# Installs and starts what the sandboxes need from the system: bubblewrap (the `bwrap` backend and the warm pool)
# and a Docker engine (the `docker` backend). Idempotent: installs only what is missing, starts dockerd only when
# no engine answers, then waits for it. Not root: says what is missing, and the tests that need it skip.
set -uo pipefail

log() { echo "sandbox setup: $*"; }

need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null \
      || log "apt-get could not install ${need[*]}; the tests that need them will skip"
  else
    log "missing ${need[*]}: not root, so not installing (run: sudo apt-get install ${need[*]})"
  fi
fi


if ! command -v dockerd >/dev/null 2>&1; then
  log "no dockerd; the Docker sandbox tests will skip"
  exit 0
fi
if timeout 5 docker version >/dev/null 2>&1; then
  log "Docker engine already answers"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "no Docker engine answers and starting dockerd needs root; the Docker sandbox tests will skip"
  exit 0
fi

log "starting dockerd in the background (log: /var/log/reflectgym-dockerd.log)"
nohup dockerd >/var/log/reflectgym-dockerd.log 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if timeout 5 docker version >/dev/null 2>&1; then
    log "Docker engine answers"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 30 s (see /var/log/reflectgym-dockerd.log); the Docker sandbox tests will skip"
exit 0
