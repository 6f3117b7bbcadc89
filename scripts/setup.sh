#!/usr/bin/env bash
# Installs the Debian packages tessera needs, only when something is missing.
# Idempotent; safe to run on every `make demo` / `make test`. Needs root (or sudo)
# only when it actually has to install something.
set -euo pipefail

PKGS=(
  build-essential pkg-config      # C toolchain for -sys crates
  libclang-dev                    # bindgen (hdf5-sys, mpi-sys)
  openmpi-bin libopenmpi-dev      # MPI runtime + headers (rsmpi)
  libhdf5-openmpi-dev             # parallel HDF5 (hdf5-metno, feature mpio)
  python3 python3-h5py python3-numpy python3-matplotlib  # format read-back tests, demo report
  slurm-wlm munge                 # one-node Slurm for `tessera slurm` tests (scripts/slurm_local.sh)
  libpmix-dev                     # srun --mpi=pmix: Slurm's pmix plugin dlopens libpmix.so from it
  slurmdbd mariadb-server         # job accounting (sacct) for `slurm_local.sh start --accounting`
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all system packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # The daemons tessera uses (munged, slurmctld, slurmd, slurmdbd, mariadbd) are started
  # by scripts/slurm_local.sh in its own state dir; the packages must not start system
  # services on install. Container images usually forbid that already
  # (/usr/sbin/policy-rc.d); elsewhere a temporary one does, removed afterwards.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# tessera scripts/setup.sh: no service starts during its install\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
