"""`ganworks train`: flags to TrainOptions, checks before start-up, then the Ray run."""

from __future__ import annotations

import argparse
import json

from ganworks.commandline import add_store_flags, stop_on_sigterm, store_overrides
from ganworks.settings import StoreSettings, load_settings
from ganworks.telemetry import register_secrets
from ganworks.models import FAMILIES
from trainer.config import ENV_PREFIX, NEW_CLASS_INIT, TrainOptions
from trainer.losses import LOSSES


def _settable(family: str) -> str:
    return ", ".join(f"{p.name} ({p.default})" for p in FAMILIES[family].params if not p.from_data)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="run id; the same id again resumes the run from its last checkpoint (default: run-<date>-<time>)")
    data = parser.add_argument_group("data and model")
    data.add_argument("--dataset", help="'digits', 'fashion-mnist', a .npz file, an image folder, or a store URL; NAME:class1,class2@COUNT keeps some classes / at most COUNT images (default digits)")
    data.add_argument("--dataset-b", help="--model cyclegan: domain B's dataset (any spec --dataset takes); --dataset is domain A")
    data.add_argument("--split", choices=["train", "all"], help="which part of the dataset to train on (default train: 80%%, the rest is held out for evaluation)")
    data.add_argument("--image-size", type=int, help="train at this square size (default 32)")
    data.add_argument("--channels", type=int, choices=[1, 3], help="convert the images to this many channels (default: as they are)")
    data.add_argument("--conditional", action="store_true", default=None, help="class-conditional G and D (the dataset needs labels)")
    data.add_argument("--model", help=f"model family: {', '.join(sorted(FAMILIES))} (default dcgan; with --init-from, the source snapshot's)")
    data.add_argument("--model-param", dest="model_params", action="append", metavar="KEY=VALUE",
                      help=f"a hyperparameter of the model family, repeatable, e.g. --model-param width=64 (dcgan: {_settable('dcgan')}; stylegan2: {_settable('stylegan2')}); "
                           "docs/trainer.md lists them with their defaults")
    data.add_argument("--init-from", metavar="RUN[@STEP]", help="start from another run's snapshot (its LATEST, or STEP) in the same store: "
                      "transfer learning; the model family and its flags default to the source's, and a different class count gets new class embeddings")
    data.add_argument("--new-class-init", metavar="{%s} or NEW=SOURCE,..." % ",".join(NEW_CLASS_INIT),
                      help="with --init-from and another class count: the new classes' embeddings start each at the source class its images "
                      "resemble most by the source discriminator (nearest, the default for a new run; a resumed run keeps what it began with), "
                      "fresh (random), at the mean of the source's classes (mean), or at the source class you name for each new class "
                      "(e.g. bag=coat,ankle-boot=sneaker)")
    data.add_argument("--freeze-d-blocks", type=int, metavar="K", help="with --init-from: keep the first K discriminator blocks at the source's weights (default 0)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--loss", help=f"one of {', '.join(sorted(LOSSES))} (default: the kind's: hinge for images, wgan-gp-pac for tables "
                                    "(hinge with --dp-epsilon), lsgan for translation)")
    opt.add_argument("--steps", type=int, help="train until this step (default 1000)")
    opt.add_argument("--batch-size", type=int, help="global batch, split over the workers (default 64)")
    opt.add_argument("--g-lr", type=float, help="generator learning rate (default 2e-4)")
    opt.add_argument("--d-lr", type=float, help="discriminator learning rate (default 2e-4)")
    opt.add_argument("--beta1", type=float, help="Adam β1 of both networks (default 0; cyclegan is usually trained with 0.5)")
    opt.add_argument("--beta2", type=float, help="Adam β2 of both networks (default 0.99; cyclegan: 0.999)")
    opt.add_argument("--r1-gamma", type=float, help="R1 penalty weight; 0 turns it off (default 0)")
    opt.add_argument("--r1-every", type=int, help="lazy R1: apply it every k steps (default 16)")
    opt.add_argument("--gp-weight", type=float, help="gradient penalty weight for --loss wgan-gp (default 10)")
    opt.add_argument("--pl-weight", type=float, help="path-length regularisation of G; 0 turns it off (default 0; StyleGAN2 uses 2)")
    opt.add_argument("--pl-every", type=int, help="lazy path-length regularisation: apply it every k steps (default 4)")
    opt.add_argument("--augment", choices=["none", "ada"], help="ada: adaptive augmentation of everything D sees, for small datasets (default none)")
    opt.add_argument("--augment-target", type=float, help="ada: the wanted fraction of positive D outputs on real images (default 0.6)")
    opt.add_argument("--augment-speed-images", type=int, help="ada: images over which p can go from 0 to 1 (default 100000)")
    opt.add_argument("--ema-half-life-images", type=int, help="G_ema half-life in images (default 10000)")
    opt.add_argument("--ema-rampup", type=float, help="cap the half-life at this fraction of the images seen; 0 = off (default 0.05, and 0 with --init-from)")
    opt.add_argument("--seed", type=int, help="seed of weights, noise and data order (default 0)")
    dp = parser.add_argument_group("differential privacy (docs/privacy.md)")
    dp.add_argument("--dp-epsilon", type=float, metavar="E", help="train D with DP-SGD (Opacus) and stop before the privacy loss passes ε = E")
    dp.add_argument("--dp-delta", type=float, metavar="D", help="δ of the guarantee (default 1/(n·√n) for n training images)")
    dp.add_argument("--dp-max-grad-norm", type=float, metavar="C", help="clip each sample's gradient of D to this norm (default 1)")
    dp.add_argument("--dp-transformer-epsilon", type=float, metavar="T",
                    help="tables: fit the data transformer privately with T of the budget E (the networks get E - T), so that ε covers it too "
                         "(default 0: fitted as without DP, and ε covers the networks only)")
    dp.add_argument("--dp-noise-multiplier", type=float, metavar="S", help="fix the noise (σ) instead of choosing it so that --steps spend E; the run stops where E is spent")
    out = parser.add_argument_group("snapshots and checkpoints")
    out.add_argument("--snapshot-every", type=int, help="publish G_ema every K steps (default 100)")
    out.add_argument("--checkpoint-every", type=int, help="save Ray's resume state every K steps (default: with every snapshot)")
    out.add_argument("--checkpoint-min-seconds", type=float, help="at most one resume checkpoint per this many seconds; the last step always gets one (default 5)")
    out.add_argument("--log-every", type=int, help="log and export metrics every K steps (default 10)")
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--num-workers", type=int, help="data-parallel workers (default 2)")
    cluster.add_argument("--cpus-per-worker", type=int, help="CPUs (and torch threads) per worker (default 1)")
    cluster.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker, NCCL, bf16 mixed precision")
    cluster.add_argument("--no-mixed-precision", dest="mixed_precision", action="store_const", const=False, help="full precision on GPUs too")
    cluster.add_argument("--max-failures", type=int, help="restarts from the last checkpoint after a worker fails (default 3)")
    cluster.add_argument("--ray-address", help="'local' starts a Ray cluster here; 'auto' or ray://host:10001 joins one (default: RAY_ADDRESS or local)")
    cluster.add_argument("--metrics-port", type=int, help="Prometheus /metrics of rank 0; 0 picks a free port (env GANWORKS_TRAINER_METRICS_PORT; default 9310)")
    cluster.add_argument("--metrics-host", help="address /metrics listens on (env GANWORKS_TRAINER_METRICS_HOST; default 0.0.0.0)")
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    parser.add_argument("--dry-run", action="store_true", help="check the flags, store and dataset, print the plan, train nothing")
    add_store_flags(parser)


def options_from_args(args: argparse.Namespace) -> TrainOptions:
    fields = {f for f in TrainOptions.__dataclass_fields__}
    overrides = {name: value for name, value in vars(args).items() if name in fields}
    return load_settings(TrainOptions, overrides, prefix=ENV_PREFIX)


def run(args: argparse.Namespace) -> int:
    from trainer import driver

    options = options_from_args(args)
    store_settings = load_settings(StoreSettings, store_overrides(args))
    register_secrets([store_settings.s3_secret_key])
    plan = driver.plan(options, store_settings)
    if args.dry_run:
        print(json.dumps(plan.run_json(), indent=2))
        return 0
    driver.connect_ray(plan.options, worker_logs=args.no_progress)
    # After ray.init, whose own SIGTERM handler aborts the process: a supervisor's SIGTERM (Kubernetes,
    # `ganworks up`) then ends like Ctrl-C, and Ray is shut down on the way out.
    stop_on_sigterm()
    outcome = driver.train(plan, show_progress=not args.no_progress)
    print(json.dumps({"run": outcome.run, "step": outcome.step, "snapshots_published": outcome.published,
                      "publish_failed": outcome.publish_failed, "seconds": round(outcome.seconds, 1), "store": plan.store.url}))
    return 0
