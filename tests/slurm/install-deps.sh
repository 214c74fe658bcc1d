#!/usr/bin/env bash
# Installs a single-node Slurm (Debian 12: Slurm 22.05) and munge for the
# tests that run Corral against Slurm. tests/slurm/cluster.sh starts the
# daemons itself, as processes it owns; their packages' system services
# are kept from starting (deploy/apt-install.sh).
set -euo pipefail
# slurm-wlm pulls in slurmctld, slurmd and slurm-client.
exec "$(dirname "$0")/../../deploy/apt-install.sh" slurm-wlm munge
