#!/bin/sh
# An Incus daemon for envbox's tests and CI on a Debian 12 machine without systemd. Idempotent.
#
#   scripts/incus-ci.sh install   bookworm-backports (derived from this host's own apt sources), the incus
#                                 packages, and root's /etc/subuid + /etc/subgid range for Incus
#   scripts/incus-ci.sh up        install, then start incusd in the background unless one already answers,
#                                 and initialise it (dir storage pool, its own bridge) if it never was.
#                                 Prints "started PID" (this run started it) or "running".
#   scripts/incus-ci.sh down      only when `up` started the daemon: removes what `up` initialised (profile
#                                 devices, bridge, storage pool) and stops that daemon by its pid
#
# Knobs: INCUS_CI_SUBNET (bridge gateway/prefix, default 10.213.47.1/24), INCUS_CI_BRIDGE (ebxincus0),
# INCUS_CI_PIDFILE (/run/envbox-incus-ci.pid), INCUS_CI_LOG (/var/log/incus/envbox-ci.log).
set -eu

SUBNET="${INCUS_CI_SUBNET:-10.213.47.1/24}"
BRIDGE="${INCUS_CI_BRIDGE:-ebxincus0}"
PIDFILE="${INCUS_CI_PIDFILE:-/run/envbox-incus-ci.pid}"
LOG="${INCUS_CI_LOG:-/var/log/incus/envbox-ci.log}"
# Present while the storage pool, bridge and profile devices are the ones `up` made (down removes only those).
MARK="${PIDFILE%.pid}.preseeded"
SOCKET=/var/lib/incus/unix.socket
# Incus uses only the first root range it finds in /etc/subuid: it must be this one, which lies below
# envbox's own LXC pool (0x48000000 upwards, see src/providers/lxc/idmap.ts), so the two never share ids.
SUBID_LINE="root:1000000:1000000000"

say() { echo "incus-ci: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"

codename() { . /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"; }

# The Debian archive this host already uses (deb822 .sources first, then one-line sources.list), as
# "URI|Signed-By": backports comes from the same place, so no mirror host is ever written down here.
debian_source() {
  suite="$1"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      function flush() { if (uri != "" && hit) { print uri "|" signed; found = 1; exit } uri = ""; signed = ""; hit = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/ { uri = $2 }
      /^Signed-By:/ { signed = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (!found) flush() }' "$f" | head -n1 | grep . && return 0
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n "s/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\)[[:space:]]\+$suite[[:space:]].*/\2|/p" "$f" | head -n1 | grep . && return 0
  done
  return 1
}

add_backports() {
  suite="$(codename)"
  list=/etc/apt/sources.list.d/envbox-backports.sources
  [ -f "$list" ] && return 0
  grep -rqs "$suite-backports" /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
  found="$(debian_source "$suite")" || die "no Debian $suite entry in /etc/apt/sources.list* to derive $suite-backports from"
  uri="${found%%|*}"
  signed="${found#*|}"
  say "adding $suite-backports from $uri"
  {
    echo "# Added by envbox scripts/incus-ci.sh: Incus is in $suite-backports"
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: $suite-backports"
    echo "Components: main"
    [ -z "$signed" ] || echo "Signed-By: $signed"
  } >"$list"
  apt-get update -qq
}

# Our range first among root's lines; every other line (LXC's pool, users' ranges) stays as it was.
fix_subids() {
  for f in /etc/subuid /etc/subgid; do
    touch "$f"
    first="$(grep -m1 '^root:' "$f" || true)"
    [ "$first" = "$SUBID_LINE" ] && continue
    { echo "$SUBID_LINE"; grep -vx "$SUBID_LINE" "$f" || true; } >"$f.envbox-tmp"
    chmod 644 "$f.envbox-tmp"
    mv "$f.envbox-tmp" "$f"
    say "made $SUBID_LINE root's first range in $f"
  done
}

install() {
  fix_subids
  if ! command -v incus >/dev/null || ! incusd_bin >/dev/null; then
    add_backports
    bpo="$(codename)-backports"
    say "installing incus-base and incus-client from $bpo"
    # Only these two come from backports (pkg/suite, not -t): -t would also pull backports' QEMU, which
    # the full `incus` package (VM support) needs and which would replace the QEMU the vm provider uses.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "incus-base/$bpo" "incus-client/$bpo" dnsmasq-base >/dev/null
  fi
}

incusd_bin() {
  for b in /usr/libexec/incus/incusd /usr/lib/incus/incusd /usr/sbin/incusd /usr/bin/incusd; do
    [ -x "$b" ] && { echo "$b"; return 0; }
  done
  return 1
}

answers() { [ -S "$SOCKET" ] && timeout 5 incus query /1.0 >/dev/null 2>&1; }

collides() {
  net="$(echo "$SUBNET" | cut -d. -f1-3)."
  ip -4 route show table all | awk '{print $1}' | grep -q "^$net" || ip -4 addr show | grep -q "inet $net"
}

initialised() { incus profile device show default 2>/dev/null | grep -q 'path: /'; }

preseed() {
  collides && die "$SUBNET collides with a route or address on this host; set INCUS_CI_SUBNET to a free /24"
  say "initialising: storage pool default (dir), bridge $BRIDGE $SUBNET"
  incus admin init --preseed <<EOF
storage_pools:
- name: default
  driver: dir
networks:
- name: $BRIDGE
  type: bridge
  config:
    ipv4.address: $SUBNET
    ipv4.nat: "true"
    ipv6.address: none
profiles:
- name: default
  devices:
    root: { type: disk, path: /, pool: default }
    eth0: { type: nic, name: eth0, network: $BRIDGE }
EOF
  touch "$MARK"
}

up() {
  install
  if answers; then
    echo running
  else
    mkdir -p "$(dirname "$LOG")" /var/lib/incus
    getent group incus-admin >/dev/null || groupadd --system incus-admin
    bin="$(incusd_bin)" || die "incusd not found after installing incus"
    # setsid: the daemon outlives this script and the test runner's process group.
    setsid "$bin" --group incus-admin </dev/null >>"$LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
    i=0
    until answers; do
      kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOG" >&2; rm -f "$PIDFILE"; die "incusd exited while starting (log: $LOG)"; }
      i=$((i + 1))
      [ "$i" -le 120 ] || die "incusd did not answer on $SOCKET within 60s (log: $LOG)"
      sleep 0.5
    done
    echo "started $pid"
  fi
  initialised || preseed
}

down() {
  [ -f "$PIDFILE" ] || { say "no daemon started by up ($PIDFILE missing): leaving Incus alone"; return 0; }
  pid="$(cat "$PIDFILE")"
  if [ -f "$MARK" ] && answers; then
    incus profile device remove default eth0 >/dev/null 2>&1 || true
    incus profile device remove default root >/dev/null 2>&1 || true
    incus network delete "$BRIDGE" >/dev/null 2>&1 || true
    incus storage delete default >/dev/null 2>&1 || say "storage pool default still in use: left in place"
  fi
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 60 ]; do sleep 0.5; i=$((i + 1)); done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  if [ -f "$MARK" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  # The daemon leaves its (by now empty) nft table behind when it stops.
  if [ -f "$MARK" ] && nft list table inet incus >/dev/null 2>&1; then nft delete table inet incus || true; fi
  rm -f "$PIDFILE" "$MARK"
  say "stopped incusd (pid $pid)"
}

case "${1:-}" in
install) install ;;
up) up ;;
down) down ;;
*) echo "usage: scripts/incus-ci.sh install|up|down" >&2; exit 2 ;;
esac
