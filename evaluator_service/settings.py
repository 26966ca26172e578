"""Evaluator settings: flags, then GANWORKS_EVALUATOR_* environment variables, then these defaults."""

from __future__ import annotations

import dataclasses

from evaluator_service.errors import InvalidRequestError
from evaluator_service.features.inception import EXTRACTOR_ID as INCEPTION_ID
from evaluator_service.features.inception import WEIGHTS_SHA256
from evaluator_service.features.tf_import import EXTRACTOR_IDS as TF_INCEPTION_IDS
from evaluator_service.features.resize import check_resize_mode
from evaluator_service.features import check_feature_precision
from evaluator_service.metrics import METRICS, get_metric
from ganworks.settings import secret

ENV_PREFIX = "GANWORKS_EVALUATOR_"
ALL_METRICS = [name for name, metric in METRICS.items() if metric.default]


@dataclasses.dataclass
class EvaluatorSettings:
    host: str = "0.0.0.0"
    port: int = 50052
    metrics_port: int = 9312
    # Plaintext grpc.health.v1 alone, for the kubelet's probes when TLS or a token is on; -1 serves none.
    health_port: int = -1
    generator: str = "127.0.0.1:50051"
    # How to reach a generator that has auth/TLS on (its GANWORKS_GENERATOR_AUTH_TOKEN, and a PEM file of CAs to trust).
    generator_auth_token: str = secret()
    generator_tls_ca: str = ""
    runs: list[str] = dataclasses.field(default_factory=list)
    continuous: bool = False
    # The pytorch-fid Inception weights: a local path or a store URL, and the digest they must have.
    inception_weights: str = ""
    inception_sha256: str = WEIGHTS_SHA256
    default_metrics: list[str] = dataclasses.field(default_factory=lambda: list(ALL_METRICS))
    default_num_samples: int = 5000
    # Empty: the run dataset's own classifier when it has labels, else inception-v3-fid.
    default_extractor: str = ""
    default_resize_mode: str = "legacy-pytorch"
    default_seed: int = 0
    max_concurrent_jobs: int = 1
    max_queue_size: int = 8
    max_num_samples: int = 100_000
    max_reference_samples: int = 50_000
    batch_size: int = 64
    auto_fit_extractor: bool = True
    generator_retry_seconds: float = 10.0
    poll_seconds: float = 10.0
    # Continuous mode's second cadence: an Inception extractor ("" = off) for every k-th snapshot and the final one.
    continuous_inception_extractor: str = ""
    continuous_inception_every: int = 5
    continuous_inception_metrics: list[str] = dataclasses.field(default_factory=lambda: ["fid"])
    max_attempts: int = 3
    # Finished jobs answer GetEvaluation/ListEvaluations until there are more than keep_jobs or they are older than this.
    keep_jobs: int = 1000
    keep_jobs_seconds: float = 86_400.0
    # Loaded datasets and extractors kept between evaluations (each a few MB to a few hundred MB). Six datasets: a
    # translation run's plan touches five (both domains' train and test splits, and the judge's labelled base set).
    max_cached_datasets: int = 6
    max_cached_extractors: int = 4
    # glibc heap limits set at `evaluator serve` start (0 = glibc's default); see evaluator_service/heap.py.
    malloc_arena_max: int = 2
    malloc_mmap_threshold: int = 131_072
    # Ray fan-out of sampling + extraction for large evaluations: "" (off), "local", "auto" or ray://host:port.
    ray_address: str = ""
    fanout_min_samples: int = 20_000
    fanout_shards: int = 4
    torch_threads: int = 0
    # "auto" takes CUDA when present; extraction is the only part that uses it.
    device: str = "auto"
    # What CUDA feature extraction computes in: fp32 (TF32 off: features equal the CPU's), or tf32 / fp16 (faster; the
    # report records the choice and its measured difference). A CPU always computes fp32.
    feature_precision: str = "fp32"
    grace_seconds: float = 5.0
    # Calls other than health and reflection need `authorization: Bearer <token>` when set (or from GANWORKS_EVALUATOR_AUTH_TOKEN_FILE).
    auth_token: str = secret()
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        for name in ("max_concurrent_jobs", "max_queue_size", "default_num_samples", "batch_size", "max_attempts", "continuous_inception_every", "keep_jobs", "max_cached_datasets", "max_cached_extractors"):
            if int(getattr(self, name)) < 1:
                raise InvalidRequestError(f"{ENV_PREFIX}{name.upper()} must be >= 1, got {getattr(self, name)}")
        if not self.keep_jobs_seconds > 0:
            raise InvalidRequestError(f"{ENV_PREFIX}KEEP_JOBS_SECONDS must be > 0, got {self.keep_jobs_seconds}")
        for metric in (*self.default_metrics, *self.continuous_inception_metrics):
            get_metric(metric)
        check_resize_mode(self.default_resize_mode)
        check_feature_precision(self.feature_precision)
        inception_ids = (INCEPTION_ID, *TF_INCEPTION_IDS)
        if self.continuous_inception_extractor and self.continuous_inception_extractor not in inception_ids:
            raise InvalidRequestError(f"{ENV_PREFIX}CONTINUOUS_INCEPTION_EXTRACTOR (--inception-extractor) must be one of {', '.join(inception_ids)}, got {self.continuous_inception_extractor!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidRequestError("TLS needs both --tls-cert and --tls-key (env GANWORKS_EVALUATOR_TLS_CERT / _TLS_KEY)")
        for metric in map(get_metric, self.default_metrics):
            for p in metric.params:
                if p.at_most_samples and p.default is not None and self.default_num_samples < p.default:
                    # Caught at start: otherwise every continuous evaluation would fail the same way.
                    raise InvalidRequestError(
                        f"--num-samples {self.default_num_samples} (GANWORKS_EVALUATOR_DEFAULT_NUM_SAMPLES) is smaller than {metric.name}.{p.name} "
                        f"({p.default}); use at least {p.default} samples or leave {metric.name} out of --metrics ({ENV_PREFIX}DEFAULT_METRICS)"
                    )
