"""Generates the documentation's reference and benchmark pages from the code, the protos, the rules and the results.

`python -m tools.docgen` (or `make docs-gen`) rewrites every generated page; `--check` fails when a committed page
differs from what would be written (tests/core/test_docs.py runs it, like the stub drift test does for `make proto`).
"""
