#!/usr/bin/env bash
# Installs the references of the study benchmarks (docs/BENCHMARKS.md §6, §7) into a venv
# of Debian's /usr/bin/python3, target/study-bench-venv:
#   ray       (benches/study_vs_ray.py: 1000 trivial runs through Ray tasks)
#   adaptive  (benches/adaptive_vs_python.py: python-adaptive's Learner1D)
# Versions are pinned (override with RAY_VERSION= / ADAPTIVE_VERSION=). Idempotent: does
# nothing when the venv already imports both at those versions. Installing needs PyPI;
# python3-venv is installed with apt-get when `python3 -m venv` cannot bootstrap pip.
# Prints the venv's python on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STUDY_BENCH_VENV:-$ROOT/target/study-bench-venv}"
RAY_VERSION="${RAY_VERSION:-2.60.0}"
ADAPTIVE_VERSION="${ADAPTIVE_VERSION:-1.5.2}"
PY=/usr/bin/python3

check() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$RAY_VERSION" "$ADAPTIVE_VERSION" >/dev/null 2>&1 <<'PY'
import sys
import ray, adaptive
assert ray.__version__ == sys.argv[1], ray.__version__
assert adaptive.__version__.split("+")[0] == sys.argv[2], adaptive.__version__
l = adaptive.Learner1D(lambda x: x * x, bounds=(-1, 1))
adaptive.runner.simple(l, npoints_goal=10)
assert l.npoints == 10
PY
}

if check; then
  echo "setup_study_bench: ray $RAY_VERSION and adaptive $ADAPTIVE_VERSION already in $VENV"
else
  if [ ! -x "$VENV/bin/pip" ]; then
    rm -rf "$VENV"
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
      SUDO=""
      if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
      echo "setup_study_bench: installing python3-venv"
      export DEBIAN_FRONTEND=noninteractive
      $SUDO apt-get update -qq
      $SUDO apt-get install -y -qq --no-install-recommends python3-venv
      rm -rf "$VENV"
      "$PY" -m venv "$VENV"
    fi
  fi
  echo "setup_study_bench: installing ray==$RAY_VERSION adaptive==$ADAPTIVE_VERSION into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "ray==$RAY_VERSION" "adaptive==$ADAPTIVE_VERSION"
  check || { echo "setup_study_bench: ray/adaptive not usable from $VENV/bin/python" >&2; exit 1; }
fi

"$VENV/bin/python" -c 'import ray, adaptive, numpy, scipy, platform; print("setup_study_bench: ray %s, adaptive %s, numpy %s, scipy %s, python %s" % (ray.__version__, adaptive.__version__, numpy.__version__, scipy.__version__, platform.python_version()))'
echo "$VENV/bin/python"
