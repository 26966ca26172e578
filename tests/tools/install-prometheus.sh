#!/usr/bin/env bash
# Unpacks Debian's prometheus package (prometheus + promtool) into DIR without starting any service. The version is
# pinned: the promtool rule tests and the dashboard tests were written against it; another one fails here, by name.
set -euo pipefail
dest=${1:?usage: install-prometheus.sh DIR}
DEBIAN_VERSION=2.42.0+ds-5+deb12u1
UPSTREAM=${DEBIAN_VERSION%%+*}
mkdir -p "$dest" && dest=$(cd "$dest" && pwd)
check() {
  local found
  found=$("$dest/bin/promtool" --version 2>&1 | head -1)
  case "$found" in
    *"version $UPSTREAM"*) return 0 ;;
    *) echo "install-prometheus.sh: found '$found' in $dest/bin, the tests were written for prometheus $UPSTREAM" \
            "(Debian $DEBIAN_VERSION); remove $dest/bin/promtool and run make tools again" >&2; return 1 ;;
  esac
}
if [ -x "$dest/bin/promtool" ] && [ -x "$dest/bin/prometheus" ]; then check; exit; fi
mkdir -p "$dest/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download "prometheus=$DEBIAN_VERSION" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  if ! apt-get download "prometheus=$DEBIAN_VERSION" >/dev/null; then
    echo "install-prometheus.sh: Debian no longer serves prometheus $DEBIAN_VERSION; it serves:" >&2
    apt-cache madison prometheus >&2 || true
    echo "Move DEBIAN_VERSION in tests/tools/install-prometheus.sh to one of those and run tests/deploy." >&2
    exit 1
  fi
fi
dpkg -x prometheus_*.deb root
cp root/usr/bin/prometheus root/usr/bin/promtool "$dest/bin/"
check
"$dest/bin/promtool" --version | head -1
