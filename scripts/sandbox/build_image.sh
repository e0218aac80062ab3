#!/usr/bin/env bash
# Builds (or finds) the Docker sandbox image from the host's Debian python3, with no registry, and prints its tag.
# The docker backend also does this on first use; this script is for building ahead (e.g. in CI before the tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m reflectgym.sandboxes.docker_image
