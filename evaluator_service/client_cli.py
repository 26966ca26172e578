"""`ganworks evaluate`: asks an evaluator service to evaluate a snapshot, follows its progress, prints the numbers."""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from rich.console import Console
from rich.table import Table

from evaluator_service.errors import InvalidRequestError
from evaluator_service.metrics import METRICS
from ganworks.api import evaluator_pb2 as pb
from ganworks.api import evaluator_pb2_grpc
from ganworks.commandline import CommandError, read_flag_file, read_token_file
from ganworks.output import add_output_flags, metric_text, print_csv, print_json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="127.0.0.1:50052", help="evaluator service host:port (default 127.0.0.1:50052)")
    parser.add_argument("--run", required=True, help="run id to evaluate")
    parser.add_argument("--version", type=int, default=0, help="snapshot step (default: the newest)")
    parser.add_argument("-n", "--num-samples", type=int, default=0, help="generated samples (default: the server's, 5000)")
    parser.add_argument("--metrics", help=metrics_help())
    parser.add_argument("--extractor", default="", help="digits-classifier, inception-v3-fid, … (default: the server's choice for the run)")
    parser.add_argument("--resize-mode", default="", choices=["", "legacy-pytorch", "clean"], help="resize mode (default legacy-pytorch)")
    parser.add_argument("--seed", type=int, help="sampling seed (default: fixed, so evaluations are comparable)")
    parser.add_argument("--param", action="append", default=[], metavar="METRIC.NAME=VALUE", help="metric parameter, e.g. kid.subset_size=500 (repeatable)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (default 3600)")
    parser.add_argument("--auth-token-file", help="file with the bearer token the evaluator asks for (or env GANWORKS_EVALUATOR_AUTH_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM file of the CA that signed the evaluator's certificate; turns TLS on")
    add_output_flags(parser, wide=False)


def metrics_help() -> str:
    """--metrics' help, from the metric registry: each kind of run's metrics, and what the server computes when none are named."""
    kinds: dict[str, list[tuple[str, bool]]] = {}
    for name, metric in METRICS.items():
        kinds.setdefault(metric.kind, []).append((name, metric.default))
    listed = "; ".join(f"{kind} runs: {','.join(name for name, _ in metrics)}" for kind, metrics in kinds.items())
    only_named = [name for name, default in kinds.get("image", []) if not default]
    return (f"comma-separated metrics of the run's kind ({listed}). Default: the server's set, every metric of the run's kind"
            + (f" but {', '.join(only_named)} for an image run" if only_named else ""))


def _channel(args: argparse.Namespace) -> tuple[grpc.Channel, tuple | None]:
    """The channel to --address (TLS with --tls-ca) and the metadata carrying the bearer token, if one is given."""
    token = read_token_file("--auth-token-file", args.auth_token_file) or os.environ.get("GANWORKS_EVALUATOR_AUTH_TOKEN") or None
    ca = read_flag_file("--tls-ca", args.tls_ca)
    channel = grpc.secure_channel(args.address, grpc.ssl_channel_credentials(ca)) if ca is not None else grpc.insecure_channel(args.address)
    return channel, (("authorization", f"Bearer {token}"),) if token else None


def _params(items: list[str]) -> dict[str, float]:
    """--param METRIC.NAME=VALUE flags; a parameter of a metric this client knows is checked against its declared range
    here, so the error names the flag (the server checks again, and alone for metrics newer than this client)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, _, name = key.strip().partition(".")
        try:
            number = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise CommandError(f"--param {item!r}: write METRIC.NAME=NUMBER, e.g. --param kid.subset_size=500")
        if metric in METRICS:
            try:
                METRICS[metric].check_params({name: number})
            except InvalidRequestError as exc:
                raise CommandError(f"--param {item!r}: {exc}") from None
        out[key.strip()] = number
    return out


def run(args: argparse.Namespace) -> int:
    if args.num_samples < 0:
        raise CommandError(f"-n/--num-samples must be >= 0, got {args.num_samples}")
    request = pb.EvaluateRequest(
        run=args.run, version=args.version, num_samples=args.num_samples, extractor=args.extractor, resize_mode=args.resize_mode,
        metrics=[m.strip() for m in (args.metrics or "").split(",") if m.strip()], params=_params(args.param),
    )
    if args.seed is not None:
        request.seed = args.seed
    console = Console(stderr=True)
    channel, metadata = _channel(args)
    with channel:
        stub = evaluator_pb2_grpc.EvaluatorStub(channel)
        try:
            evaluation = stub.Evaluate(request, timeout=120, metadata=metadata)
            last_phase = ""
            for evaluation in stub.WatchEvaluation(pb.GetEvaluationRequest(id=evaluation.id), timeout=args.timeout, metadata=metadata):
                if evaluation.phase != last_phase:
                    console.print(f"[dim]{evaluation.phase} ({evaluation.progress:.0%})[/dim]")
                    last_phase = evaluation.phase
        except grpc.RpcError as exc:
            print(f"error: the evaluator at {args.address} answered {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    succeeded = evaluation.state == pb.EVALUATION_STATE_SUCCEEDED
    if args.output == "json":
        print_json(evaluation_json(evaluation))
    elif args.output == "csv" and succeeded:
        print_csv([{"metric": name, "value": evaluation.metrics[name]} for name in sorted(evaluation.metrics)], ["metric", "value"])
    if not succeeded:
        print(f"error: evaluation {evaluation.id} of {evaluation.run} step {evaluation.version} failed: {evaluation.error}", file=sys.stderr)
        return 1
    if args.output == "table":
        table = Table(title=f"{evaluation.run} step {evaluation.version} — {evaluation.extractor}, {evaluation.resize_mode}, n={evaluation.num_samples}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name in sorted(evaluation.metrics):
            table.add_row(name, metric_text(name, evaluation.metrics[name]))
        Console().print(table)
    for warning in evaluation.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if evaluation.report_url:
        console.print(f"report: {evaluation.report_url}")
    return 0


def evaluation_json(evaluation: pb.Evaluation) -> dict:
    """The shape `--output json` prints (documented in the README): exact values, not the table's rounding."""
    state = pb.EvaluationState.Name(evaluation.state).removeprefix("EVALUATION_STATE_").lower()
    return {"id": evaluation.id, "run": evaluation.run, "step": evaluation.version, "state": state, "extractor": evaluation.extractor,
            "resize_mode": evaluation.resize_mode, "num_samples": evaluation.num_samples, "metrics": dict(sorted(evaluation.metrics.items())),
            "warnings": list(evaluation.warnings), "report_url": evaluation.report_url, "error": evaluation.error}
