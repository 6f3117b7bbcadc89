#!/usr/bin/env bash
# Installs the PETSc reference stack (Debian petsc-dev + python3-petsc4py) used by
# benches/petsc_poisson.py. Idempotent: does nothing when /usr/bin/python3 can
# already `import petsc4py`. Needs root (or sudo) only when it has to install.
set -euo pipefail

PY=/usr/bin/python3

if "$PY" -c 'import petsc4py' >/dev/null 2>&1; then
  echo "setup_petsc: petsc4py already importable by $PY"
else
  echo "setup_petsc: installing petsc-dev python3-petsc4py"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends petsc-dev python3-petsc4py
  "$PY" -c 'import petsc4py' || { echo "setup_petsc: petsc4py still not importable" >&2; exit 1; }
fi

"$PY" - <<'PY'
import petsc4py
petsc4py.init([])
from petsc4py import PETSc
print("setup_petsc: petsc4py %s, PETSc %s" % (petsc4py.__version__, ".".join(map(str, PETSc.Sys.getVersion()))))
PY
