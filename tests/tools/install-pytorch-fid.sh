#!/usr/bin/env bash
# Installs the pytorch-fid package and the torchvision it builds its network from into DIR (pip --target, --no-deps,
# hashed: requirements/fid-reference.txt), never into the venv: the reference the FID agreement test runs in its own
# process with DIR on PYTHONPATH. PyPI's Linux torchvision wheels are CUDA builds; next to the CPU torch their compiled
# ops do not load, which the test's reference process works around (tests/evaluator/pytorch_fid_reference.py).
set -euo pipefail
python=${1:?usage: install-pytorch-fid.sh PYTHON DIR}
dest=${2:?usage: install-pytorch-fid.sh PYTHON DIR}
lock=requirements/fid-reference.txt
stamp="$dest/.lock-sha256"
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
rm -rf "$dest"
"$python" -m pip install --quiet --require-hashes --no-deps --target "$dest" -r "$lock"
echo "$want" > "$stamp"
