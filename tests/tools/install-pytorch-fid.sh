#!/usr/bin/env bash
# Installs the pytorch-fid package and the torchvision it builds its network from into DIR (pip --target, --no-deps),
# never into the venv: the reference the FID agreement test runs in its own process with DIR on PYTHONPATH.
# PyPI's Linux torchvision wheels are CUDA builds; next to the CPU torch their compiled ops do not load, which the
# test's reference process works around (tests/evaluator/pytorch_fid_reference.py). Pins: pyproject's fid-reference extra.
set -euo pipefail
python=${1:?usage: install-pytorch-fid.sh PYTHON DIR}
dest=${2:?usage: install-pytorch-fid.sh PYTHON DIR}
pins=$("$python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["fid-reference"]))')
stamp="$dest/.pins"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pins" ]; then exit 0; fi
rm -rf "$dest"
# shellcheck disable=SC2086
"$python" -m pip install --quiet --no-deps --target "$dest" $pins
echo "$pins" > "$stamp"
