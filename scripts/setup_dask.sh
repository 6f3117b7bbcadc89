#!/usr/bin/env bash
# Installs the Dask reference stack used by benches/post_vs_dask.py: Debian's
# python3-dask (2022.12 in bookworm; dask.array with numpy and h5py) and GNU time
# (/usr/bin/time, for peak RSS). Idempotent: does nothing when /usr/bin/python3 can
# already `import dask.array` with a working h5py and /usr/bin/time exists. Needs root
# (or sudo) only when it has to install. If Debian's dask turns out unusable with the
# installed numpy, falls back to `pip install --break-system-packages "dask[array]"`.
set -euo pipefail

PY=/usr/bin/python3
PKGS=(python3-dask python3-h5py python3-numpy time)

# A dask.array that really computes (not just imports) a small gradient + reduction.
check_dask() {
  "$PY" - >/dev/null 2>&1 <<'PY'
import dask, dask.array as da, numpy as np, h5py
x = da.from_array(np.arange(64.0).reshape(8, 8) ** 2, chunks=(4, 8))
g = da.gradient(x, 1.0, axis=0, edge_order=2)
ref = np.gradient(np.arange(64.0).reshape(8, 8) ** 2, 1.0, axis=0, edge_order=2)
assert np.array_equal(g.compute(scheduler="threads", num_workers=2), ref)
PY
}

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ] && check_dask && [ -x /usr/bin/time ]; then
  echo "setup_dask: ${PKGS[*]} already installed"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup_dask: installing ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if ! check_dask; then
    echo "setup_dask: Debian's dask does not work with this numpy/h5py; installing dask[array] with pip"
    $SUDO "$PY" -m pip install -q --break-system-packages "dask[array]"
    check_dask || { echo "setup_dask: dask.array still not usable by $PY" >&2; exit 1; }
  fi
  [ -x /usr/bin/time ] || { echo "setup_dask: /usr/bin/time missing after install" >&2; exit 1; }
fi

"$PY" -c 'import dask, numpy, h5py; print("setup_dask: dask %s, numpy %s, h5py %s (HDF5 %s)" % (dask.__version__, numpy.__version__, h5py.__version__, h5py.version.hdf5_version))'
