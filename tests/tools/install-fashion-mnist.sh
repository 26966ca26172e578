#!/usr/bin/env bash
# Makes Debian's dataset-fashion-mnist files available in DIR: a link to the installed package, or the package
# unpacked there (no root needed). The tests find DIR through GANWORKS_FASHION_MNIST_DIR (set by tests/conftest.py).
# The four files are checked against their sha256 sums: the tests' figures hold for exactly these bytes.
set -euo pipefail
dest=${1:?usage: install-fashion-mnist.sh DIR}
DEBIAN_VERSION=0.0~git20200523.55506a9-1
SUMS="cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz"
files=$(echo "$SUMS" | awk '{print $2}')
complete() { for f in $files; do [ -s "$1/$f" ] || return 1; done; }
verify() {
  if ! (cd "$1" && echo "$SUMS" | sha256sum --check --quiet --strict); then
    echo "install-fashion-mnist.sh: the files in $1 are not the ones the tests were written for" \
         "(Debian dataset-fashion-mnist $DEBIAN_VERSION); remove $dest and run make tools again" >&2
    return 1
  fi
}
if complete "$dest"; then verify "$dest"; exit; fi
installed=/usr/share/datasets/fashion-mnist
mkdir -p "$(dirname "$dest")"
if complete "$installed"; then verify "$installed"; rm -rf "$dest"; ln -s "$installed" "$dest"; exit 0; fi
dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download "dataset-fashion-mnist=$DEBIAN_VERSION" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get download "dataset-fashion-mnist=$DEBIAN_VERSION" >/dev/null
fi
dpkg -x dataset-fashion-mnist_*.deb root
mkdir -p "$dest"
for f in $files; do cp "root$installed/$f" "$dest/"; done
verify "$dest"
echo "fashion-mnist: $(ls "$dest" | wc -l) files in $dest"
