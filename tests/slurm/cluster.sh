#!/usr/bin/env bash
# A private single-node Slurm (Debian 12's Slurm 22.05 + munge) for tests.
#
#   tests/slurm/cluster.sh start DIR   # config, state, logs, pids all in DIR
#   . DIR/env                          # exports SLURM_CONF for sbatch/squeue/...
#   tests/slurm/cluster.sh stop DIR    # cancels its jobs, ends its daemons
#
# `start` runs munged, slurmctld and slurmd as background processes of its own
# (pids in DIR/*.pid), not as system services; nothing listens beyond
# 127.0.0.1. Must run as root (slurmd has to be root to start jobs and to use
# the freezer cgroup). Install the packages with tests/slurm/install-deps.sh.
#
# Environment:
#   CORRAL_SLURM_MINJOBAGE  seconds finished jobs stay visible in squeue [300]
#   CORRAL_SLURM_NODENAME   node name [this host's name, from slurmd -C]; a
#                           distinct one keeps the freezer cgroups of two
#                           clusters on one machine apart (slurm_NODENAME/)
#   CORRAL_SLURM_START_TIMEOUT  seconds to wait for the node to be idle [60]
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
if [ "$cmd" = stop ] && [ ! -d "$2" ]; then exit 0; fi
mkdir -p "$2"
dir=$(cd "$2" && pwd -P)   # absolute: the paths go into slurm.conf

# A zombie counts as dead: the daemons are orphans once `start` has exited,
# and this machine's init may take a while to reap them.
pid_alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ]
}

# Ends the processes in DIR/NAME.pid for each NAME given: SIGTERM to all at
# once (each of the three daemons takes ~2 s to exit on it), up to ~10 s,
# then SIGKILL.
stop_pidfiles() {
  local n pid pids=() alive
  for n in "$@"; do
    pid=$(cat "$dir/$n.pid" 2>/dev/null || true)
    if pid_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  for _ in $(seq 100); do
    alive=""
    for pid in "${pids[@]}"; do pid_alive "$pid" && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if pid_alive "$pid"; then
      echo "cluster.sh: $pid ($(cat /proc/"$pid"/comm 2>/dev/null)) ignored SIGTERM, killing" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for n in "$@"; do rm -f "$dir/$n.pid"; done
}

# Pids of processes that have a file of DIR open. slurmstepd daemonizes (its
# parent is init, not slurmd), so this is how the steps of this cluster are
# found: each one keeps DIR/log/slurmd.log open.
pids_using_dir() {
  find /proc/[0-9]*/fd -maxdepth 1 -lname "$dir/*" -printf '%h\n' 2>/dev/null \
    | cut -d/ -f3 | sort -u
}

# Freezer cgroup of Slurm's proctrack/cgroup (v1):
# /sys/fs/cgroup/freezer/slurm_NODENAME/uid_U/job_J/step_S. Two clusters with
# the same node name share it (and their job ids collide), so only the job
# ids of this cluster are touched here.
clean_job_cgroups() {
  local node id d t
  node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$dir/slurm.conf" 2>/dev/null || true)
  [ -n "$node" ] || return 0
  for id in "$@"; do
    for d in /sys/fs/cgroup/freezer/slurm_"$node"/uid_*/job_"$id"; do
      [ -d "$d" ] || continue
      # Thaw first: a frozen (suspended) task does not act on SIGKILL.
      find "$d" -depth -name freezer.state -exec sh -c 'echo THAWED > "$1"' _ {} \; 2>/dev/null || true
      for _ in $(seq 50); do
        t=$(find "$d" -name tasks -exec cat {} + 2>/dev/null || true)
        [ -z "$t" ] && break
        # shellcheck disable=SC2086  # $t: a list of pids
        kill -KILL $t 2>/dev/null || true
        sleep 0.1
      done
      find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
}

do_stop() {
  # Job ids of this cluster whose steps run: from slurmstepd's sockets
  # (SlurmdSpoolDir/NODE_JOBID.STEPID); this works without slurmctld too.
  find "$dir"/spool -maxdepth 2 -type s -name '*_*.*' -printf '%f\n' 2>/dev/null \
    | sed -n 's/^.*_\([0-9][0-9]*\)\.[0-9][0-9]*$/\1/p' | sort -u >"$dir/jobids"
  if [ -f "$dir/slurm.conf" ] && pid_alive "$(cat "$dir/slurmctld.pid" 2>/dev/null)"; then
    export SLURM_CONF="$dir/slurm.conf"
    # Remember this cluster's job ids (for the cgroup cleanup below), then
    # cancel them all and give the steps time to end.
    squeue -h -o %i 2>/dev/null >>"$dir/jobids" || true
    # Every job of this cluster, any user (--full: the batch step too). The
    # batch process gets SIGCONT+SIGTERM, the job's whole cgroup SIGKILL a
    # few seconds later; a suspended job gets SIGKILL at once.
    # shellcheck disable=SC2046
    if [ -s "$dir/jobids" ]; then
      scancel --full $(sort -u "$dir/jobids") 2>/dev/null || true
    fi
    for _ in $(seq 100); do
      # Done when every job is in a final state (CD, CA, F, TO, NF, OOM, ...).
      squeue -h -o %t 2>/dev/null | grep -qxE 'PD|R|S|CG|CF|RQ|RS|RH|RF|RD|SE|SI|SO|ST|RV' || break
      sleep 0.2
    done
  fi
  stop_pidfiles slurmd slurmctld munged
  # Steps still alive now (slurmd gone or timeout above): kill them by pid.
  local p left
  for p in $(pids_using_dir); do
    if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = slurmstepd ]; then
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  # shellcheck disable=SC2046
  [ -f "$dir/jobids" ] && clean_job_cgroups $(cat "$dir/jobids")
  # Daemons of this cluster not ended above (pid file lost, ...). Only these
  # names: a test process reading DIR/out/*.out must not be hit.
  for p in $(pids_using_dir); do
    case "$(cat /proc/"$p"/comm 2>/dev/null)" in
      slurmstepd|slurmd|slurmctld|slurmscriptd|munged) kill -KILL "$p" 2>/dev/null || true ;;
    esac
  done
  sleep 0.2
  left=$(for p in $(pids_using_dir); do
    case "$(cat /proc/"$p"/comm 2>/dev/null)" in
      slurmstepd|slurmd|slurmctld|slurmscriptd|munged) echo "$p" ;;
    esac
  done)
  if [ -n "$left" ]; then
    echo "cluster.sh: slurm processes still using $dir: $left" >&2
    return 1
  fi
  # slurmd leaves its node's (now empty) freezer cgroup behind; rmdir
  # removes only empty ones, so another cluster's jobs are never touched.
  local node
  node=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$dir/slurm.conf" 2>/dev/null || true)
  if [ -n "$node" ] && [ -d "/sys/fs/cgroup/freezer/slurm_$node" ]; then
    find "/sys/fs/cgroup/freezer/slurm_$node" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  fi
  return 0
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

dump_logs() {
  local f
  for f in "$dir"/log/*; do
    [ -f "$f" ] || continue
    echo "===== $f (last 40 lines) =====" >&2
    tail -n 40 "$f" >&2
  done
}

fail() {
  echo "cluster.sh: start failed: $*" >&2
  dump_logs
  do_stop || true
  exit 1
}

do_start() {
  [ "$(id -u)" -eq 0 ] || { echo "cluster.sh: must run as root" >&2; exit 1; }
  for b in munged mungekey slurmctld slurmd sinfo; do
    command -v "$b" >/dev/null || { echo "cluster.sh: $b missing (tests/slurm/install-deps.sh)" >&2; exit 1; }
  done
  if pid_alive "$(cat "$dir/slurmctld.pid" 2>/dev/null)"; then
    echo "cluster.sh: a cluster already runs in $dir" >&2; exit 1
  fi
  do_stop >/dev/null 2>&1 || true   # leftovers of an earlier run in DIR

  mkdir -p "$dir"/{munge,log,state,spool,out}
  # munged refuses a socket/key dir others can write to; 0755 (not 0700) so
  # that clients other than root can reach the socket.
  chmod 0755 "$dir" "$dir/munge"
  # A fresh cluster each start: no jobs or node state of an earlier run
  # (job ids start at 1 again).
  rm -rf "$dir"/log/* "$dir"/state/* "$dir"/spool/*

  # --- munge: own key, socket, pid, log and seed file ---
  local key="$dir/munge/munge.key" sock="$dir/munge/munge.socket.2"
  [ -f "$key" ] || mungekey --create --keyfile="$key"
  chmod 0400 "$key"
  # -F: stay in the foreground so $! is munged itself (it then logs to
  # stderr, i.e. DIR/log/munged.out, not --log-file). --force: as root,
  # munged otherwise refuses to run.
  munged -F --force --socket="$sock" --key-file="$key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed" </dev/null >>"$dir/log/munged.out" 2>&1 &
  echo $! >"$dir/munged.pid"
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
  [ -S "$sock" ] || fail "munged did not create $sock"

  # --- slurm.conf ---
  local ctl_host node cpus boards sockets cores threads mem ctl_port d_port
  ctl_host=$(hostname -s)
  # slurmd -C prints this machine's node line; take name and sizes from it.
  local c
  c=$(slurmd -C | head -n1)
  node=${CORRAL_SLURM_NODENAME:-$(sed -n 's/.*NodeName=\([^ ]*\).*/\1/p' <<<"$c")}
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$c")
  boards=$(sed -n 's/.* Boards=\([0-9]*\).*/\1/p' <<<"$c")
  sockets=$(sed -n 's/.* SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$c")
  cores=$(sed -n 's/.* CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$c")
  threads=$(sed -n 's/.* ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$c")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$c")
  # slurmd would log an error before creating its spool dir itself.
  mkdir -p "$dir/spool/slurmd-$node"
  ctl_port=$(free_port)
  d_port=$(free_port)
  while [ "$d_port" = "$ctl_port" ]; do d_port=$(free_port); done

  cat >"$dir/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a private single-node test cluster.
ClusterName=corraltest
SlurmctldHost=$ctl_host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
# Daemons (slurmctld: NoCtldInAddrAny, slurmd: NoInAddrAny) bind to the
# loopback address of their host entry, not to 0.0.0.0.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny

# Private munge daemon; the socket is read both for auth and for credentials.
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge

StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd.daemon.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true

# proctrack/cgroup: every process of a job (setsid'd ones too) is tracked and
# killed at job end; proctrack/linuxproc loses children of an exited parent.
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none

AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core

ReturnToService=2
MinJobAge=${CORRAL_SLURM_MINJOBAGE:-300}
# SIGTERM -> SIGKILL on scancel/timeout after KillWait (measured: ~4.5 s
# from scancel to SIGKILL with 2; default 30), so tests stay quick.
KillWait=2
InactiveLimit=0
# SuspendTime (power saving) is left unset: off.

NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

  # cgroup.conf is read from slurm.conf's dir. On a hybrid hierarchy (v1
  # controllers incl. freezer + v2 at /sys/fs/cgroup/unified) 22.05's
  # cgroup/v1 is the one that works; cgroup/v2 wants a pure v2 mount and
  # systemd. Only the freezer (proctrack) is used; nothing is constrained.
  local plugin=autodetect
  [ -d /sys/fs/cgroup/freezer ] && plugin=cgroup/v1
  cat >"$dir/cgroup.conf" <<EOF
CgroupPlugin=$plugin
CgroupAutomount=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
ConstrainDevices=no
EOF

  printf 'export SLURM_CONF=%q\n' "$dir/slurm.conf" >"$dir/env"
  export SLURM_CONF="$dir/slurm.conf"

  # --- daemons, in the foreground (-D) so $! is the daemon ---
  slurmctld -D -f "$dir/slurm.conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.pid"
  slurmd -D -f "$dir/slurm.conf" -N "$node" </dev/null >>"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.pid"

  local timeout=${CORRAL_SLURM_START_TIMEOUT:-60} state=""
  for _ in $(seq $((timeout * 5))); do
    pid_alive "$(cat "$dir/slurmctld.pid")" || fail "slurmctld exited"
    pid_alive "$(cat "$dir/slurmd.pid")" || fail "slurmd exited"
    state=$(sinfo -h -N -n "$node" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
  done
  [ "$state" = idle ] || fail "node $node not idle after ${timeout}s (state: '${state}')"
  echo "cluster.sh: slurm up in $dir (node $node, slurmctld :$ctl_port, slurmd :$d_port); . $dir/env"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  *) usage ;;
esac
