#!/usr/bin/env bash
# Unpacks Debian's chromium package, and the libraries it needs that the machine lacks, into DIR (no system install,
# no service); DIR/bin/chromium runs it headless-ready with those libraries on LD_LIBRARY_PATH.
set -euo pipefail
dest=${1:?usage: install-chromium.sh DIR}
mkdir -p "$dest" && dest=$(cd "$dest" && pwd)
if [ -x "$dest/bin/chromium" ] && "$dest/bin/chromium" --version >/dev/null 2>&1; then exit 0; fi
mkdir -p "$dest/bin"
found=$(command -v chromium || true)
if [ -n "$found" ]; then ln -sf "$found" "$dest/bin/chromium"; "$dest/bin/chromium" --version; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# The packages an install would add on this machine: chromium itself and its missing dependencies.
wanted() { apt-get install -s --no-install-recommends chromium 2>/dev/null | awk '/^Inst /{print $2}'; }
pkgs=$(wanted)
if [ -z "$pkgs" ] || ! apt-get download $pkgs >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  pkgs=$(wanted)
  apt-get download $pkgs >/dev/null
fi
for deb in ./*.deb; do dpkg -x "$deb" "$dest/chromium-root"; done
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
libs="$dest/chromium-root/usr/lib/$arch:$dest/chromium-root/usr/lib/$arch/pulseaudio:$dest/chromium-root/usr/lib/chromium"
cat > "$dest/bin/chromium" <<WRAP
#!/bin/sh
export LD_LIBRARY_PATH="$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$dest/chromium-root/usr/lib/chromium/chromium" "\$@"
WRAP
chmod +x "$dest/bin/chromium"
"$dest/bin/chromium" --version
