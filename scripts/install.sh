#!/bin/sh
# Installs what envbox needs on Debian/Ubuntu and builds it: Debian packages (only those missing),
# npm ci, the TypeScript build and the native helpers. With --link it also puts `env` and `envbox`
# on the PATH (/usr/local/bin). Safe to run again: it only does what is missing.
set -eu
cd "$(dirname "$0")/.."

link=false
for arg in "$@"; do
  case "$arg" in
  --link) link=true ;;
  *) echo "usage: scripts/install.sh [--link]" >&2; exit 2 ;;
  esac
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# What envbox runs (lxc, mmdebstrap, uidmap, nftables, openssh-client, zstd; qemu-system-x86, qemu-utils
# and e2fsprogs for VMs), builds with (gcc,
# make, libc6-dev) and what its tests drive as real peers (curl, chromium, inotify-tools, git).
packages="lxc mmdebstrap uidmap nftables openssh-client zstd qemu-system-x86 qemu-utils e2fsprogs iproute2 gcc make libc6-dev curl inotify-tools git chromium rsync"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "==> installing Debian packages:$missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # The locked versions, as npm ci would install them; npm ci itself refuses this lock where the
  # registry does not serve every platform's optional build of a package (rollup's, for one).
  echo "==> npm install (locked versions)"
  npm install --no-save --no-audit --no-fund --loglevel=error
fi

echo "==> building"
npm run --silent build

if $link; then
  $sudo ln -sf "$PWD/native/build/env-shim" /usr/local/bin/env
  $sudo ln -sf "$PWD/native/build/env-shim" /usr/local/bin/envbox
  echo "==> env and envbox are in /usr/local/bin (plain \`env\` still runs coreutils env)"
fi
