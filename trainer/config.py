"""Training options: one dataclass, from flags, then GANWORKS_TRAINER_* environment variables, then defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

from ganworks.errors import ConfigError

ENV_PREFIX = "GANWORKS_TRAINER_"


DEFAULT_EMA_RAMPUP = 0.05
NEW_CLASS_INIT = ("mean", "nearest", "random")  # --new-class-init (trainer/transfer.py), or NEW=SOURCE pairs
DEFAULT_NEW_CLASS_INIT = "nearest"


def class_map(text: str | None) -> dict[str, str] | None:
    """--new-class-init NEW=SOURCE[,NEW=SOURCE...] as {new class: source class}; None for a rule (mean, nearest, random)
    or no value. ConfigError, naming the flag, for anything else."""
    if text is None or text in NEW_CLASS_INIT:
        return None
    pairs = [part.split("=") for part in text.split(",")]
    if any(len(pair) != 2 or not pair[0].strip() or not pair[1].strip() for pair in pairs):
        raise ConfigError(f"--new-class-init must be one of {', '.join(NEW_CLASS_INIT)}, or NEW=SOURCE pairs naming the source class each new "
                          f"class starts at (e.g. bag=coat,ankle-boot=sneaker), got {text!r}")
    named = [new.strip() for new, _ in pairs]
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        raise ConfigError(f"--new-class-init names a start for {', '.join(map(repr, twice))} more than once: {text!r}")
    return {new.strip(): old.strip() for new, old in pairs}


DEFAULT_MODEL = "dcgan"


@dataclasses.dataclass
class TrainOptions:
    """Everything a run is trained with; recorded in runs/<run>/run.json."""

    run: str = ""
    dataset: str = "digits"
    dataset_b: str = ""  # a translation model's (cyclegan) domain B; --dataset is domain A
    split: str = "train"
    image_size: int = 32
    channels: int = 0  # 0 = as the dataset has them
    conditional: bool = False
    # The model family (ganworks.models); "" = dcgan, or with --init-from the source snapshot's family (plan() reads it).
    model: str = ""
    # The family's hyperparameters as given (--model-param KEY=VALUE, repeatable; or "k=v,k=v" in the environment);
    # the family validates them, and run.json records the full validated set as architecture_params.
    model_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    loss: str = ""  # "": the kind's default (hinge for images, wgan-gp-pac for tables, lsgan for translation)
    steps: int = 1000
    batch_size: int = 64  # global: split evenly over the workers
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 0.0  # 0 = no R1 penalty
    r1_every: int = 16  # lazy R1: the penalty every k D steps, scaled by k
    gp_weight: float = 10.0  # wgan-gp only
    pl_weight: float = 0.0  # path-length regularisation of G; 0 = off (StyleGAN2 uses 2)
    pl_every: int = 4  # lazy: every k G steps, scaled by k
    augment: str = "none"  # "ada": adaptive augmentation of everything D sees (trainer/augment.py)
    augment_target: float = 0.6  # ADA: the wanted fraction of positive D logits on real images
    augment_speed_images: int = 100_000  # ADA: images over which p can go from 0 to 1
    # Transfer learning: start from another run's snapshot, RUN or RUN@STEP (trainer/transfer.py); optionally
    # keep the first k discriminator blocks frozen at the source's weights (FreezeD).
    init_from: str = ""
    freeze_d_blocks: int = 0
    # With --init-from and a different class count: where the new classes' embeddings and projections start —
    # "nearest": each at the source class its images resemble most (by the source discriminator); "random": freshly
    # initialised, as in a run from scratch; "mean": at the mean of the source's classes (every new class starts as
    # the source's average class). None: what a resumed run began with, and "nearest" for a new run (the transfer
    # benchmark measured it best, docs/trainer.md); plan() records the resolved choice.
    new_class_init: str | None = None
    # Differential privacy (trainer/privacy.py): DP-SGD on D with a budget of ε = dp_epsilon at δ = dp_delta (0: 1/(n·√n));
    # 0 = a non-private run. The noise multiplier is chosen for --steps unless dp_noise_multiplier fixes it.
    dp_epsilon: float = 0.0
    dp_delta: float = 0.0
    dp_max_grad_norm: float = 1.0
    dp_noise_multiplier: float = 0.0
    # A table's transformer fitted privately with this part of dp_epsilon (ganworks/tabular/private.py); 0 = fitted as
    # without DP, which ε then does not cover.
    dp_transformer_epsilon: float = 0.0
    ema_half_life_images: int = 10_000
    # The half-life is at most this fraction of the images seen (0 = no ramp-up). None: 0.05 from scratch, 0 with
    # --init-from — as StyleGAN2-ADA does when it starts from a snapshot: the source's G_ema is already the average of a
    # trained generator, and a ramped-up average would follow every swing of the fine-tuned one.
    ema_rampup: float | None = None
    snapshot_every: int = 100
    checkpoint_every: int = 0  # 0 = with every snapshot
    checkpoint_min_seconds: float = 5.0  # Ray registers about one checkpoint per poll; faster ones only queue up
    log_every: int = 10
    sample_grid_seed: int = 0
    seed: int = 0
    num_workers: int = 2
    cpus_per_worker: int = 1
    use_gpu: bool = False
    mixed_precision: bool = True  # only ever used on a GPU
    max_failures: int = 3
    ray_address: str = ""  # "" = RAY_ADDRESS if set, else local
    metrics_port: int = 9310
    metrics_host: str = "0.0.0.0"  # `ganworks up`/`demo` bind 127.0.0.1
    publish_retry_seconds: float = 120.0

    def __post_init__(self) -> None:
        self.model_params = parse_model_params(self.model_params)
        if not self.model and not self.init_from:
            self.model = DEFAULT_MODEL
        if self.ema_rampup is None:
            self.ema_rampup = 0.0 if self.init_from else DEFAULT_EMA_RAMPUP

    def validate(self) -> "TrainOptions":
        """Checks what can be checked without the dataset or the cluster; messages name the flag."""
        from trainer.losses import get_loss  # here, so reading the options needs no torch

        if self.loss:
            get_loss(self.loss)
        positive = {"steps": self.steps, "batch_size": self.batch_size, "num_workers": self.num_workers, "snapshot_every": self.snapshot_every,
                    "log_every": self.log_every, "cpus_per_worker": self.cpus_per_worker, "r1_every": self.r1_every, "image_size": self.image_size,
                    "pl_every": self.pl_every, "augment_speed_images": self.augment_speed_images}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.freeze_d_blocks and not self.init_from:
            raise ConfigError("--freeze-d-blocks keeps blocks at a source snapshot's weights: it needs --init-from RUN[@STEP]")
        class_map(self.new_class_init)  # a rule, or well-formed NEW=SOURCE pairs
        if self.new_class_init not in (None, "random") and not self.init_from:
            raise ConfigError(f"--new-class-init {self.new_class_init} starts new classes from a source snapshot's: it needs --init-from RUN[@STEP]")
        for name in ("freeze_d_blocks", "checkpoint_every", "checkpoint_min_seconds", "max_failures", "r1_gamma", "gp_weight", "pl_weight", "ema_half_life_images", "ema_rampup", "metrics_port"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.num_workers:
            raise ConfigError(f"--batch-size {self.batch_size} (global) must be divisible by --num-workers {self.num_workers}")
        if self.g_lr <= 0 or self.d_lr <= 0:
            raise ConfigError("--g-lr and --d-lr must be positive")
        if self.augment not in ("none", "ada"):
            raise ConfigError(f"--augment must be none or ada, got {self.augment!r}")
        if not 0 < self.augment_target < 1:
            raise ConfigError(f"--augment-target must be between 0 and 1, got {self.augment_target}")
        if self.augment_speed_images < 1:
            raise ConfigError(f"--augment-speed-images must be at least 1 (the images over which ADA's p can go from 0 to 1), got {self.augment_speed_images}")
        if self.channels not in (0, 1, 3):
            raise ConfigError(f"--channels must be 1, 3 or 0 (as the dataset has them), got {self.channels}")
        if not (0 <= self.dp_epsilon < float("inf")):
            raise ConfigError(f"--dp-epsilon must be a finite positive budget (leave it out for a non-private run), got {self.dp_epsilon}")
        if not 0 <= self.dp_delta < 1:
            raise ConfigError(f"--dp-delta must be between 0 and 1, got {self.dp_delta}")
        if self.dp_max_grad_norm <= 0 or self.dp_noise_multiplier < 0:
            raise ConfigError("--dp-max-grad-norm must be positive and --dp-noise-multiplier at least 0")
        if not self.dp_epsilon and (self.dp_delta or self.dp_noise_multiplier or self.dp_transformer_epsilon):
            raise ConfigError("--dp-delta, --dp-noise-multiplier and --dp-transformer-epsilon need --dp-epsilon (the privacy budget)")
        if self.dp_epsilon and not 0 <= self.dp_transformer_epsilon < self.dp_epsilon:
            raise ConfigError(f"--dp-transformer-epsilon {self.dp_transformer_epsilon:g} must be a part of --dp-epsilon {self.dp_epsilon:g}, "
                              "at least 0 and below it: the networks train with the rest")
        if self.metrics_port > 65535:
            raise ConfigError(f"--metrics-port {self.metrics_port} is not a port number")
        return self

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or self.snapshot_every

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_model_params(given: dict[str, Any] | list[str] | str | None) -> dict[str, Any]:
    """KEY=VALUE items (a list from repeated flags, or one comma-separated string from the environment) as a dict.

    Values stay text here; the model family converts and checks them against its declared types.
    """
    if isinstance(given, dict):
        return dict(given)
    items = [part for part in (given.split(",") if isinstance(given, str) else given or []) if part.strip()]
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-param {item!r} is not KEY=VALUE (for example --model-param width=64)")
        params[key.strip()] = value.strip()
    return params
