"""`ganworks translate`: sends PNG images to a generator service's translation model and writes the translated PNGs."""

from __future__ import annotations

import argparse
import os
import pathlib

import grpc

from ganworks.commandline import CommandError, read_flag_file, read_token_file
from ganworks.output import add_output_flags, print_csv, print_json

FIELDS = ["input", "out", "model", "version", "direction"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IN.png", help="PNG images of the source domain (grey or RGB)")
    parser.add_argument("--address", default="localhost:50051", help="generator host:port (default localhost:50051)")
    parser.add_argument("--run", required=True, help="the translation model (run id) to use")
    parser.add_argument("--direction", required=True, choices=["a_to_b", "b_to_a"], help="a_to_b: the run's --dataset domain to its --dataset-b domain; b_to_a: back")
    parser.add_argument("--out", required=True, help="output PNG file for one input; a folder (created) for several, each written under its input's name")
    parser.add_argument("--version", type=int, default=0, help="snapshot step to pin (default 0: the newest)")
    parser.add_argument("--resize", action="store_true", help="let the server resize and convert images to the model's size and channels instead of refusing them")
    parser.add_argument("--token-file", help="file with the bearer token (or env GANWORKS_GENERATOR_AUTH_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM file of the CA that signed the server's certificate; turns TLS on")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer (default 60)")
    add_output_flags(parser, wide=False)


def run(args: argparse.Namespace) -> int:
    from ganworks.generator_client import GeneratorClient
    from ganworks.images import encode_png

    inputs = [pathlib.Path(p) for p in args.inputs]
    for path in inputs:
        if not path.is_file():
            raise CommandError(f"input {path}: no such file")
    if len(set(p.name for p in inputs)) < len(inputs):
        raise CommandError("two inputs have the same file name; their outputs would overwrite each other in --out")
    out = pathlib.Path(args.out)
    if len(inputs) == 1:
        if out.suffix.lower() != ".png":
            raise CommandError(f"--out {args.out}: name a .png file for one input")
        targets = [out]
    else:
        if out.suffix:
            raise CommandError(f"--out {args.out}: with {len(inputs)} inputs, name a folder (the outputs keep their inputs' names)")
        targets = [out / p.with_suffix(".png").name for p in inputs]
    token = read_token_file("--token-file", args.token_file) or os.environ.get("GANWORKS_GENERATOR_AUTH_TOKEN") or None
    ca = read_flag_file("--tls-ca", args.tls_ca)
    with GeneratorClient(args.address, token=token, root_certificates=ca, timeout=args.timeout) as client:
        try:
            result = client.translate(args.run, [p.read_bytes() for p in inputs], args.direction, version=args.version, resize=args.resize)
        except grpc.RpcError as exc:
            raise CommandError(f"generator at {args.address} answered {exc.code().name}: {exc.details()}") from None
    written = []
    for source, target, pixels in zip(inputs, targets, result.images):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_png(pixels))
        written.append({"input": str(source), "out": str(target), "model": result.model, "version": int(result.version), "direction": args.direction})
    if args.output == "json":
        print_json(written if len(written) > 1 else written[0])
    elif args.output == "csv":
        print_csv(written, FIELDS)
    else:
        for row in written:
            print(f"translated {row['input']} ({args.direction}) with model {result.model} version {result.version} to {row['out']}")
    return 0
