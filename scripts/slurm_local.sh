#!/usr/bin/env bash
# A one-node Slurm on localhost, for tests, CI and trying `tessera slurm` out:
# munged, slurmctld and slurmd with a slurm.conf written for this host, all state in
# STATE_DIR, and every daemon stopped by the pid this script recorded (nothing else).
#
#   scripts/slurm_local.sh start  [STATE_DIR]   start (or say it is already running)
#   scripts/slurm_local.sh stop   [STATE_DIR]   cancel this cluster's jobs, stop its daemons
#   scripts/slurm_local.sh status [STATE_DIR]   daemons, node and queue; exit 1 when down
#   scripts/slurm_local.sh env    [STATE_DIR]   print `export SLURM_CONF=...` (for eval)
#
# STATE_DIR defaults to $TESSERA_SLURM_DIR, else <repo>/target/slurm-local. Clients
# (sbatch, srun, squeue, tessera slurm ...) find this cluster through
#   export SLURM_CONF=STATE_DIR/slurm.conf      # or: eval "$(scripts/slurm_local.sh env)"
# Ports: slurmctld on $TESSERA_SLURM_PORT (default 6817), slurmd on the next one; give
# clusters started side by side (two test suites) different ports.
# Needs root (the daemons run as root, SlurmUser=root) and the Debian packages from
# scripts/setup.sh (slurm-wlm, munge, libpmix-dev).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cmd="${1:-}"
state="${2:-${TESSERA_SLURM_DIR:-$repo/target/slurm-local}}"
port="${TESSERA_SLURM_PORT:-6817}"

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ -n "$cmd" ] || usage
mkdir -p "$state"
state="$(cd "$state" && pwd)"
conf="$state/slurm.conf"
export SLURM_CONF="$conf"

log() { echo "slurm_local: $*"; }
die() {
  echo "slurm_local: $*" >&2
  exit 1
}

# The pid recorded for daemon $1 when that process is still this cluster's daemon:
# alive, running the expected program, and (for the Slurm daemons) with our conf on
# its command line, so a recycled pid is never taken for ours.
live_pid() {
  local name="$1" f="$state/pids/$1" pid cmdline
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline="$( (tr '\0' ' ' <"/proc/$pid/cmdline") 2>/dev/null)" || return 1
  case "$cmdline" in
    *"$name"*"$state/"*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

running_count() {
  local n=0 d
  for d in munged slurmctld slurmd; do
    if live_pid "$d" >/dev/null; then n=$((n + 1)); fi
  done
  echo "$n"
}

need() {
  command -v "$1" >/dev/null 2>&1 ||
    die "$1 not found: install the Slurm packages with scripts/setup.sh (Debian: slurm-wlm munge)"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_conf() {
  local host cpus mem node defmem
  host="$(hostname -s)"
  # The node line exactly as slurmd detects this machine (a node declared bigger than it
  # is would be drained at registration).
  node="$(slurmd -C 2>/dev/null | head -n 1)"
  [[ "$node" == NodeName=* ]] || die "slurmd -C did not describe this machine: $node"
  node="$(echo "$node" | sed -E "s/^NodeName=[^ ]+/NodeName=$host/")"
  cpus="$(echo "$node" | sed -nE 's/.* CPUs=([0-9]+).*/\1/p')"
  mem="$(echo "$node" | sed -nE 's/.* RealMemory=([0-9]+).*/\1/p')"
  defmem=$((mem / cpus))
  cat >"$conf" <<EOF
# Written by scripts/slurm_local.sh for host $host: a one-node test cluster, all of
# its state under $state. Regenerated at every start.
ClusterName=tessera-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire seconds before it may start again (default 120).
AuthInfo=socket=$state/munge/munge.socket,cred_expire=5
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$state/plugstack.conf
MailProg=/bin/true
# No cgroups in containers: processes are tracked through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs, one line each (state, exit code, times): no slurmdbd, so no sacct.
JobCompType=jobcomp/filetxt
JobCompLoc=$state/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
MpiDefault=pmix
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
JobRequeue=1
ReturnToService=2
# Finished jobs stay visible to squeue for MinJobAge seconds.
MinJobAge=300
KillWait=10
InactiveLimit=0
SlurmctldTimeout=120
SlurmdTimeout=300
$node State=UNKNOWN NodeAddr=127.0.0.1
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$host MaxTime=00:10:00 State=UP
EOF
  : >"$state/plugstack.conf"
}

wait_idle() {
  local i out
  for i in $(seq 1 150); do
    out="$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)"
    case "$out" in
      idle | mixed | allocated) return 0 ;;
      drain* | down*)
        [ "$i" -gt 25 ] && break
        ;;
    esac
    for d in munged slurmctld slurmd; do
      live_pid "$d" >/dev/null || die "$d exited during start-up; see $state/log/$d.log:
$(tail -n 15 "$state/log/$d.log" 2>/dev/null)"
    done
    sleep 0.2
  done
  die "the node did not become idle (state: ${out:-none}); sinfo -R:
$(sinfo -R 2>&1)
slurmd log: $(tail -n 15 "$state/log/slurmd.log" 2>/dev/null)"
}

start() {
  local n
  n="$(running_count)"
  if [ "$n" -eq 3 ]; then
    log "already running in $state (pids $(cat "$state/pids/munged") $(cat "$state/pids/slurmctld") $(cat "$state/pids/slurmd"))"
    log "export SLURM_CONF=$conf"
    return 0
  fi
  if [ "$n" -gt 0 ]; then
    log "partly running in $state; stopping what is left first"
    stop
  fi
  need munged
  need slurmctld
  need slurmd
  need sinfo
  [ "$(id -u)" -eq 0 ] || die "needs root (the daemons run as root)"
  for p in "$port" $((port + 1)); do
    if port_busy "$p"; then
      die "port $p is in use (another Slurm?); stop it, or choose other ports with TESSERA_SLURM_PORT=N"
    fi
  done
  mkdir -p "$state"/{munge,ctld,spool,run,log,pids}
  chmod 755 "$state/munge"
  local key="$state/munge/munge.key"
  if [ ! -s "$key" ]; then
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile="$key"
    else
      dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
  fi
  chmod 400 "$key"
  write_conf
  # Each daemon in the foreground of its own background process, so $! is its pid;
  # stdio detached, so a caller capturing our output is not held open by them.
  munged --foreground --force --key-file="$key" --socket="$state/munge/munge.socket" \
    --pid-file="$state/munge/munged.pid" --log-file="$state/log/munged.log" \
    --seed-file="$state/munge/munged.seed" </dev/null >>"$state/log/munged.out" 2>&1 &
  echo $! >"$state/pids/munged"
  for _ in $(seq 1 50); do
    [ -S "$state/munge/munge.socket" ] && break
    live_pid munged >/dev/null || die "munged exited: $(tail -n 5 "$state/log/munged.log" "$state/log/munged.out" 2>/dev/null)"
    sleep 0.1
  done
  # -c: a fresh controller state each start (this cluster is disposable).
  slurmctld -D -c -f "$conf" </dev/null >>"$state/log/slurmctld.out" 2>&1 &
  echo $! >"$state/pids/slurmctld"
  slurmd -D -f "$conf" -N "$(hostname -s)" </dev/null >>"$state/log/slurmd.out" 2>&1 &
  echo $! >"$state/pids/slurmd"
  wait_idle
  log "started in $state: munged $(cat "$state/pids/munged"), slurmctld $(cat "$state/pids/slurmctld"), slurmd $(cat "$state/pids/slurmd"); node $(hostname -s) idle"
  log "export SLURM_CONF=$conf"
}

stop() {
  local d pid any=0
  # Jobs first, through this cluster's own controller, so no job step outlives it.
  if live_pid slurmctld >/dev/null && command -v scancel >/dev/null 2>&1; then
    local jobs
    jobs="$(squeue -h -t pending,running,suspended,completing,configuring -o %i 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 1 100); do
        [ -z "$(squeue -h -t pending,running,suspended,completing,configuring -o %i 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
  fi
  for d in slurmd slurmctld munged; do
    if pid="$(live_pid "$d")"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
      done
      if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
      log "stopped $d (pid $pid)"
      any=1
    fi
    rm -f "$state/pids/$d"
  done
  [ "$any" -eq 1 ] || log "not running in $state"
}

status() {
  local d pid down=0
  for d in munged slurmctld slurmd; do
    if pid="$(live_pid "$d")"; then
      echo "$d: running (pid $pid)"
    else
      echo "$d: not running"
      down=1
    fi
  done
  if [ "$down" -eq 0 ]; then
    sinfo -N -o '%N %P %T %c %m' 2>&1 || true
    squeue -o '%i %j %P %T %M %R' 2>&1 || true
  fi
  echo "SLURM_CONF=$conf"
  return "$down"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) usage ;;
esac
