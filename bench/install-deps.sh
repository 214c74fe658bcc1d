#!/usr/bin/env bash
# Installs what bench/run.py measures Corral against: supervisord, nginx,
# wrk and psutil (Debian 12 packages). Their packages' system services
# (nginx on port 80, a supervisord) are kept from starting
# (deploy/apt-install.sh).
set -euo pipefail
exec "$(dirname "$0")/../deploy/apt-install.sh" supervisor nginx-light wrk \
  python3-psutil
