#!/usr/bin/env bash
# Installs system packages the CLI's integration tests use:
#   nginx-light  serves fixtures over HTTP Range requests (tests/remote.rs)
#   bsdutils     provides `script`, a pseudo-terminal for the colour test
# Tests that need them print a notice and skip when they are missing.
set -euo pipefail
if command -v nginx >/dev/null && command -v script >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light bsdutils >/dev/null
