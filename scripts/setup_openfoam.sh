#!/usr/bin/env bash
# Installs the OpenFOAM reference (Debian `openfoam`, v1912 in bookworm) used by
# benches/cavity_vs_icofoam.py. Idempotent: does nothing when the package is
# installed and its environment file exists. Needs root (or sudo) only when it has
# to install. `--with-examples` also installs `openfoam-examples` (the tutorials,
# ~57 MB; the bench writes its own case and does not need them). Not used by CI.
set -euo pipefail

PKGS=(openfoam)
if [ "${1:-}" = "--with-examples" ]; then PKGS+=(openfoam-examples); fi
# Debian's layout: binaries in /usr/bin, libraries in /usr/lib, etc/ in /usr/share/openfoam.
# Sourcing this bashrc prints errors (Debian ships no foamEtcFile/foamCleanPath) but
# sets WM_PROJECT_DIR, which is all the binaries need to find etc/controlDict.
BASHRC=/usr/share/openfoam/etc/bashrc

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ] && [ -f "$BASHRC" ]; then
  echo "setup_openfoam: ${PKGS[*]} already installed"
else
  echo "setup_openfoam: installing ${missing[*]:-${PKGS[*]}}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]:-${PKGS[@]}}"
fi

if [ ! -f "$BASHRC" ]; then
  echo "setup_openfoam: $BASHRC not found after install" >&2
  exit 1
fi

# The OpenFOAM environment script is not `set -eu` clean, so check it in a child shell.
bash -c "source '$BASHRC' >/dev/null 2>&1; command -v icoFoam >/dev/null && echo \"setup_openfoam: OpenFOAM \$WM_PROJECT_VERSION, icoFoam at \$(command -v icoFoam)\"" \
  || { echo "setup_openfoam: icoFoam not found after sourcing $BASHRC" >&2; exit 1; }
