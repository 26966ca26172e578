#!/usr/bin/env bash
# Makes Debian's dataset-fashion-mnist files available in DIR: a link to the installed package, or the package
# unpacked there (no root needed). The tests find DIR through GANWORKS_FASHION_MNIST_DIR (set by tests/conftest.py).
set -euo pipefail
dest=${1:?usage: install-fashion-mnist.sh DIR}
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
complete() { for f in $files; do [ -s "$1/$f" ] || return 1; done; }
if complete "$dest"; then exit 0; fi
installed=/usr/share/datasets/fashion-mnist
mkdir -p "$(dirname "$dest")"
if complete "$installed"; then rm -rf "$dest"; ln -s "$installed" "$dest"; exit 0; fi
dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download dataset-fashion-mnist >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get download dataset-fashion-mnist >/dev/null
fi
dpkg -x dataset-fashion-mnist_*.deb root
mkdir -p "$dest"
for f in $files; do cp "root$installed/$f" "$dest/"; done
echo "fashion-mnist: $(ls "$dest" | wc -l) files in $dest"
