#!/usr/bin/env bash
# A one-node Slurm on localhost, for tests, CI and trying `tessera slurm` out:
# munged, slurmctld and slurmd with a slurm.conf written for this host, all state in
# STATE_DIR, and every daemon stopped by the pid this script recorded (nothing else).
#
#   scripts/slurm_local.sh start  [STATE_DIR]   start (or say it is already running)
#   scripts/slurm_local.sh start --accounting [STATE_DIR]
#                                   the same plus job accounting: a private MariaDB and
#                                   slurmdbd, so `sacct` works; MinJobAge=2
#   scripts/slurm_local.sh stop   [STATE_DIR]   cancel this cluster's jobs, stop its daemons
#   scripts/slurm_local.sh status [STATE_DIR]   daemons, node and queue; exit 1 when down
#   scripts/slurm_local.sh env    [STATE_DIR]   print `export SLURM_CONF=...` (for eval)
#
# STATE_DIR defaults to $TESSERA_SLURM_DIR, else <repo>/target/slurm-local. Clients
# (sbatch, srun, squeue, tessera slurm ...) find this cluster through
#   export SLURM_CONF=STATE_DIR/slurm.conf      # or: eval "$(scripts/slurm_local.sh env)"
# Ports: slurmctld on $TESSERA_SLURM_PORT (default 6817), slurmd on the next one; give
# clusters started side by side (two test suites) different ports. With --accounting,
# slurmdbd listens on port+2 and MariaDB on port+3 (127.0.0.1 only; its datadir, socket
# and pid file in STATE_DIR/mysql, a fresh database at each start); `stop` stops them too
# (and removes that database).
# Needs root (the daemons run as root, SlurmUser=root) and the Debian packages from
# scripts/setup.sh (slurm-wlm, munge, libpmix-dev; slurmdbd, mariadb-server).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cmd="${1:-}"
accounting=0
if [ "$cmd" = start ] && [ "${2:-}" = --accounting ]; then
  accounting=1
  shift
fi
state="${2:-${TESSERA_SLURM_DIR:-$repo/target/slurm-local}}"
port="${TESSERA_SLURM_PORT:-6817}"

usage() {
  sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ -n "$cmd" ] || usage
mkdir -p "$state"
state="$(cd "$state" && pwd)"
conf="$state/slurm.conf"
export SLURM_CONF="$conf"
# Present while the cluster runs with accounting (start --accounting writes it).
acct_mark="$state/accounting"
dbd_port=$((port + 2))
db_port=$((port + 3))

log() { echo "slurm_local: $*"; }
# A failed start stops what it had started (set while starting).
starting=0
die() {
  echo "slurm_local: $*" >&2
  if [ "$starting" -eq 1 ]; then
    starting=0
    stop >&2 || true
  fi
  exit 1
}

# The pid recorded for daemon $1 when that process is still this cluster's daemon:
# alive, running the expected program, and (for the Slurm daemons) with our conf on
# its command line, so a recycled pid is never taken for ours. slurmdbd takes no
# config option (it reads slurmdbd.conf beside $SLURM_CONF): its environment must
# hold our SLURM_CONF instead.
live_pid() {
  local name="$1" f="$state/pids/$1" pid cmdline
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline="$( (tr '\0' ' ' <"/proc/$pid/cmdline") 2>/dev/null)" || return 1
  case "$cmdline" in
    *"$name"*"$state/"*) echo "$pid" ;;
    *slurmdbd*)
      [ "$name" = slurmdbd ] && (tr '\0' '\n' <"/proc/$pid/environ") 2>/dev/null | grep -qxF "SLURM_CONF=$conf" || return 1
      echo "$pid"
      ;;
    *) return 1 ;;
  esac
}

# The daemons of this cluster, in start order: with accounting (this start's, or
# the running cluster's: argument 1) MariaDB and slurmdbd too.
daemons() {
  if [ "${1:-$accounting}" -eq 1 ]; then
    echo munged mariadbd slurmdbd slurmctld slurmd
  else
    echo munged slurmctld slurmd
  fi
}

running_count() {
  local n=0 d
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
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
$(accounting_conf)
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
MinJobAge=$([ "$accounting" -eq 1 ] && echo 2 || echo 300)
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

accounting_conf() {
  if [ "$accounting" -eq 1 ]; then
    cat <<EOF
# Job accounting through this cluster's own slurmdbd (sacct works); finished jobs also
# go, one line each (state, exit code, times), to the jobcomp file.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
# Clients and slurmctld authenticate to slurmdbd through this munge socket (for slurmdbd
# connections AuthInfo's socket is not used).
AccountingStoragePass=$state/munge/munge.socket
EOF
  else
    cat <<EOF
AccountingStorageType=accounting_storage/none
# Finished jobs, one line each (state, exit code, times): no slurmdbd, so no sacct.
EOF
  fi
}

# The database slurmdbd keeps: a private MariaDB server on 127.0.0.1:$db_port, run as
# root, everything in $state/mysql, initialised afresh at each start (the controller
# starts with a clean state too: no records of an earlier cluster mix in).
start_mariadb() {
  local db="$state/mysql" pass
  rm -rf "$db"
  mkdir -p "$db/data"
  mariadb-install-db --no-defaults --user=root --datadir="$db/data" --auth-root-authentication-method=socket \
    --skip-test-db --innodb-log-file-size=8M >"$state/log/mariadb-install.log" 2>&1 ||
    die "mariadb-install-db failed: $(tail -n 15 "$state/log/mariadb-install.log")"
  mariadbd --no-defaults --user=root --datadir="$db/data" --socket="$db/mysqld.sock" --pid-file="$db/mysqld.pid" \
    --port="$db_port" --bind-address=127.0.0.1 --log-error="$state/log/mariadbd.log" --skip-name-resolve \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=8M </dev/null >>"$state/log/mariadbd.out" 2>&1 &
  echo $! >"$state/pids/mariadbd"
  for _ in $(seq 1 150); do
    mariadb-admin --no-defaults --socket="$db/mysqld.sock" -u root ping >/dev/null 2>&1 && break
    live_pid mariadbd >/dev/null || die "mariadbd exited: $(tail -n 15 "$state/log/mariadbd.log" 2>/dev/null)"
    sleep 0.2
  done
  pass="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  mariadb --no-defaults --socket="$db/mysqld.sock" -u root -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
    die "cannot create the slurm database user: $(tail -n 15 "$state/log/mariadbd.log" 2>/dev/null)"
  # slurmdbd.conf holds the password: slurmdbd insists on mode 600, owned by SlurmUser.
  (
    umask 077
    cat >"$state/slurmdbd.conf" <<EOF
# Written by scripts/slurm_local.sh: slurmdbd of the test cluster in $state.
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.socket
DbdHost=$(hostname -s)
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$state/run/slurmdbd.pid
LogFile=$state/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
  )
  chown root:root "$state/slurmdbd.conf"
  chmod 600 "$state/slurmdbd.conf"
}

# slurmdbd (it reads slurmdbd.conf beside $SLURM_CONF), then this cluster in its
# database: slurmctld would add it itself, sacctmgr makes it certain before the first job.
start_slurmdbd() {
  slurmdbd -D </dev/null >>"$state/log/slurmdbd.out" 2>&1 &
  echo $! >"$state/pids/slurmdbd"
  for _ in $(seq 1 150); do
    port_busy "$dbd_port" && break
    live_pid slurmdbd >/dev/null || die "slurmdbd exited: $(tail -n 15 "$state/log/slurmdbd.log" "$state/log/slurmdbd.out" 2>/dev/null)"
    sleep 0.2
  done
  port_busy "$dbd_port" || die "slurmdbd does not listen on port $dbd_port: $(tail -n 15 "$state/log/slurmdbd.log" 2>/dev/null)"
  if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx tessera-local; then
    sacctmgr -i add cluster tessera-local >>"$state/log/sacctmgr.out" 2>&1 ||
      die "sacctmgr add cluster failed: $(tail -n 5 "$state/log/sacctmgr.out")"
  fi
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
    for d in $(daemons); do
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
  local n want d pids="" have=0
  n="$(running_count)"
  want="$(daemons | wc -w)"
  [ -f "$acct_mark" ] && have=1
  # Running as asked (with or without accounting, as this start says): nothing to do.
  if [ "$n" -eq "$want" ] && [ "$have" -eq "$accounting" ]; then
    for d in $(daemons); do pids="$pids $(cat "$state/pids/$d")"; done
    log "already running in $state (pids${pids})"
    log "export SLURM_CONF=$conf"
    return 0
  fi
  if [ "$n" -eq "$(daemons "$have" | wc -w)" ] && [ "$have" -ne "$accounting" ]; then
    log "running $([ "$have" -eq 1 ] && echo with || echo without) accounting in $state; stopping it first"
    stop
  elif [ "$n" -gt 0 ]; then
    log "partly running in $state; stopping what is left first"
    stop
  fi
  need munged
  need slurmctld
  need slurmd
  need sinfo
  if [ "$accounting" -eq 1 ]; then
    for p in mariadbd mariadb-install-db mariadb mariadb-admin slurmdbd sacctmgr; do
      command -v "$p" >/dev/null 2>&1 ||
        die "$p not found: install the accounting packages with scripts/setup.sh (Debian: slurmdbd mariadb-server)"
    done
  fi
  [ "$(id -u)" -eq 0 ] || die "needs root (the daemons run as root)"
  local ports=("$port" $((port + 1)))
  [ "$accounting" -eq 1 ] && ports+=("$dbd_port" "$db_port")
  for p in "${ports[@]}"; do
    if port_busy "$p"; then
      die "port $p is in use (another Slurm?); stop it, or choose other ports with TESSERA_SLURM_PORT=N"
    fi
  done
  mkdir -p "$state"/{munge,ctld,spool,run,log,pids}
  starting=1
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
  rm -f "$acct_mark"
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
  if [ "$accounting" -eq 1 ]; then
    start_mariadb
    start_slurmdbd
    : >"$acct_mark"
  fi
  # -c: a fresh controller state each start (this cluster is disposable).
  slurmctld -D -c -f "$conf" </dev/null >>"$state/log/slurmctld.out" 2>&1 &
  echo $! >"$state/pids/slurmctld"
  slurmd -D -f "$conf" -N "$(hostname -s)" </dev/null >>"$state/log/slurmd.out" 2>&1 &
  echo $! >"$state/pids/slurmd"
  wait_idle
  starting=0
  if [ "$accounting" -eq 1 ]; then
    log "started in $state: munged $(cat "$state/pids/munged"), mariadbd $(cat "$state/pids/mariadbd") (port $db_port), slurmdbd $(cat "$state/pids/slurmdbd") (port $dbd_port), slurmctld $(cat "$state/pids/slurmctld"), slurmd $(cat "$state/pids/slurmd"); node $(hostname -s) idle; sacct works"
  else
    log "started in $state: munged $(cat "$state/pids/munged"), slurmctld $(cat "$state/pids/slurmctld"), slurmd $(cat "$state/pids/slurmd"); node $(hostname -s) idle"
  fi
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
  # The controller before slurmdbd (it sends its last records), slurmdbd before its database.
  for d in slurmd slurmctld slurmdbd mariadbd munged; do
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
  rm -f "$acct_mark"
  # The database is rebuilt at each start: 100+ MB not worth keeping.
  if [ -d "$state/mysql" ] && ! live_pid mariadbd >/dev/null; then rm -rf "$state/mysql" "$state/slurmdbd.conf"; fi
  [ "$any" -eq 1 ] || log "not running in $state"
}

status() {
  local d pid down=0 have=0
  [ -f "$acct_mark" ] && have=1
  for d in $(daemons "$have"); do
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
