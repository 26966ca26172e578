#!/usr/bin/env bash
# Unpacks Debian's prometheus package (prometheus + promtool) into DIR without starting any service.
set -euo pipefail
dest=${1:?usage: install-prometheus.sh DIR}
mkdir -p "$dest" && dest=$(cd "$dest" && pwd)
if [ -x "$dest/bin/promtool" ] && [ -x "$dest/bin/prometheus" ]; then exit 0; fi
mkdir -p "$dest/bin"
found_prom=$(command -v prometheus || true)
found_tool=$(command -v promtool || true)
if [ -n "$found_prom" ] && [ -n "$found_tool" ]; then
  ln -sf "$found_prom" "$dest/bin/prometheus"; ln -sf "$found_tool" "$dest/bin/promtool"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get download prometheus >/dev/null
fi
dpkg -x prometheus_*.deb root
cp root/usr/bin/prometheus root/usr/bin/promtool "$dest/bin/"
"$dest/bin/promtool" --version | head -1
