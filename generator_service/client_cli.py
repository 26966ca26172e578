"""`ganworks generate`: asks a generator service for images (a grid PNG or an .npz of the arrays) or, from a tabular
model, for table rows (a .csv or an Arrow IPC stream .arrow)."""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib

import grpc
import numpy as np

from ganworks.commandline import CommandError, read_flag_file, read_token_file
from ganworks.output import add_output_flags, print_csv, print_json

GENERATED_FIELDS = ["out", "model", "version", "seed", "count", "format"]
RECORD_SUFFIXES = {".csv": "csv", ".arrow": "arrow"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="localhost:50051", help="generator host:port (default localhost:50051)")
    parser.add_argument("--run", required=True, help="model (run id) to sample from")
    parser.add_argument("-n", "--num-samples", type=int, default=16, help="how many images or rows (default 16); more than the server's limit "
                                                                              "per call are asked for in parts")
    parser.add_argument("--seed", type=int, help="seed; the same seed gives the same images (default: the server draws one)")
    parser.add_argument("--version", type=int, default=0, help="snapshot step to pin (default 0: the newest)")
    parser.add_argument("--labels", help="class labels for a conditional model: one for all, or one per image, comma-separated")
    parser.add_argument("--truncation", type=float, help="truncation psi in (0, 1] (default 1: none)")
    parser.add_argument("--condition", help="tabular models: COLUMN=VALUE, rows that all have it (e.g. default=Yes)")
    parser.add_argument("--out", required=True, help="output file: .png (a grid) or .npz (images, labels, seed, version); "
                                                     "for a tabular model .csv or .arrow (Arrow IPC stream)")
    parser.add_argument("--scale", type=int, default=1, help="enlarge the grid PNG by this integer factor (default 1)")
    parser.add_argument("--token-file", help="file with the bearer token (or env GANWORKS_GENERATOR_AUTH_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM file of the CA that signed the server's certificate; turns TLS on")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer (default 60)")
    add_output_flags(parser, wide=False)


def run(args: argparse.Namespace) -> int:
    from ganworks.images import grid_png
    from ganworks.generator_client import GeneratorClient

    out = pathlib.Path(args.out)
    if out.suffix.lower() not in (".png", ".npz", *RECORD_SUFFIXES):
        raise CommandError(f"--out {args.out}: name a .png (grid image) or .npz (arrays) file, or for a tabular model a .csv or .arrow file")
    if args.num_samples < 1:
        raise CommandError(f"-n/--num-samples must be at least 1, got {args.num_samples}")
    if args.scale < 1:
        raise CommandError(f"--scale must be at least 1, got {args.scale}")
    labels = []
    if args.labels:
        try:
            labels = [int(x) for x in args.labels.split(",") if x.strip()]
        except ValueError:
            raise CommandError(f"--labels {args.labels!r}: give integers separated by commas, e.g. --labels 3 or --labels 0,1,2") from None
    if out.suffix.lower() in RECORD_SUFFIXES:
        if labels or args.truncation is not None:
            raise CommandError("--labels and --truncation are for image models; a tabular model takes --condition COLUMN=VALUE")
    elif args.condition:
        raise CommandError(f"--condition is for tabular models, whose rows go to a .csv or .arrow --out (not {out.suffix})")
    token = read_token_file("--token-file", args.token_file) or os.environ.get("GANWORKS_GENERATOR_AUTH_TOKEN") or None
    ca = read_flag_file("--tls-ca", args.tls_ca)
    if out.suffix.lower() in RECORD_SUFFIXES:
        return _write_records(args, out, token, ca)
    if len(labels) > 1 and len(labels) != args.num_samples:
        raise CommandError(f"--labels: give one label for all images or one per image ({args.num_samples}), got {len(labels)}")
    with GeneratorClient(args.address, token=token, root_certificates=ca, timeout=args.timeout) as client, _progress(args, "images") as on_part:
        try:
            # Any -n: asked for in parts of the server's per-call limit, each part streamed (no message-size ceiling).
            result = client.generate_in_parts(args.run, args.num_samples, seed=args.seed, version=args.version, labels=labels, truncation=args.truncation,
                                              output="uint8", on_part=on_part)
        except grpc.RpcError as exc:
            raise CommandError(f"generator at {args.address} answered {exc.code().name}: {exc.details()}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        out.write_bytes(grid_png(result.images, scale=args.scale))
    else:
        np.savez(out, images=result.images, labels=result.labels, seed=np.uint64(result.seed), version=np.int64(result.version))
    written = {"out": str(out), "model": result.model, "version": int(result.version), "seed": int(result.seed), "count": len(result.images),
               "format": out.suffix.lower()[1:], "labels": [int(x) for x in result.labels]}
    if args.output == "json":
        print_json(written)
    elif args.output == "csv":
        print_csv([written], GENERATED_FIELDS)
    else:
        print(f"wrote {written['count']} images of model {result.model} version {result.version} (seed {result.seed}) to {out}")
    return 0


def _write_records(args: argparse.Namespace, out: pathlib.Path, token: str | None, ca: bytes | None) -> int:
    """Rows of a tabular model, written as the server sent them (CSV, or an Arrow IPC stream)."""
    from ganworks.generator_client import GeneratorClient

    fmt = RECORD_SUFFIXES[out.suffix.lower()]
    if args.condition is not None and "=" not in args.condition:
        raise CommandError(f"--condition {args.condition!r}: give COLUMN=VALUE, e.g. --condition default=Yes")
    with GeneratorClient(args.address, token=token, root_certificates=ca, timeout=args.timeout) as client, _progress(args, "rows") as on_part:
        try:
            rows = client.generate_records_in_parts(args.run, args.num_samples, seed=args.seed, version=args.version, condition=args.condition, format=fmt,
                                                    on_part=on_part)
        except grpc.RpcError as exc:
            raise CommandError(f"generator at {args.address} answered {exc.code().name}: {exc.details()}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(rows.data)
    written = {"out": str(out), "model": rows.model, "version": int(rows.version), "seed": int(rows.seed), "count": args.num_samples, "format": fmt}
    if args.output == "json":
        print_json({**written, "columns": list(rows.columns)})
    elif args.output == "csv":
        print_csv([written], GENERATED_FIELDS)
    else:
        print(f"wrote {args.num_samples} rows ({', '.join(rows.columns)}) of model {rows.model} version {rows.version} (seed {rows.seed}) to {out}")
    return 0


@contextlib.contextmanager
def _progress(args: argparse.Namespace, what: str):
    """A progress bar on stderr (a terminal only, table output only) as the parts arrive; yields the on_part callback."""
    import sys

    if args.output != "table" or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task(f"{what} from {args.run}", total=args.num_samples)
        yield lambda done, total: progress.update(task, completed=done)
