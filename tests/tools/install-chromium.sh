#!/usr/bin/env bash
# Unpacks Debian's chromium package, and the libraries it needs that the machine lacks, into DIR (no system install,
# no service); DIR/bin/chromium runs it headless-ready with those libraries on LD_LIBRARY_PATH.
# Debian replaces chromium with every security release and drops the old one, so no exact version can be pinned:
# the one installed is recorded in DIR/chromium.version, and one older than the tests were written for fails here.
set -euo pipefail
dest=${1:?usage: install-chromium.sh DIR}
OLDEST_MAJOR=150
mkdir -p "$dest" && dest=$(cd "$dest" && pwd)
record() {
  local found major
  found=$("$dest/bin/chromium" --version 2>/dev/null | head -1)
  major=$(echo "$found" | grep -oE '[0-9]+' | head -1)
  if [ -z "$major" ] || [ "$major" -lt "$OLDEST_MAJOR" ]; then
    echo "install-chromium.sh: found '${found:-nothing that runs}', the report tests were written for chromium" \
         ">= $OLDEST_MAJOR (headless screenshots); remove $dest/bin/chromium and run make tools again" >&2
    return 1
  fi
  echo "$found" > "$dest/chromium.version"
}
if [ -x "$dest/bin/chromium" ] && "$dest/bin/chromium" --version >/dev/null 2>&1; then record; exit; fi
mkdir -p "$dest/bin"
found=$(command -v chromium || true)
if [ -n "$found" ]; then ln -sf "$found" "$dest/bin/chromium"; record; cat "$dest/chromium.version"; exit 0; fi
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
record
cat "$dest/chromium.version"
