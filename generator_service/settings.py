"""Settings of the generator service (flags, then GANWORKS_GENERATOR_* environment, then defaults)."""

from __future__ import annotations

import dataclasses

from ganworks.errors import ConfigError
from ganworks.settings import secret

ENV_PREFIX = "GANWORKS_GENERATOR_"


@dataclasses.dataclass
class GeneratorSettings:
    """Everything `ganworks generator serve` can be told; env names are GANWORKS_GENERATOR_<FIELD>."""

    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int = 9311
    # Plaintext grpc.health.v1 alone, for the kubelet's probes when TLS or a token is on; -1 serves none.
    health_port: int = -1
    # The Open Inference Protocol over HTTP/REST (KServe v2): -1 = off (the default), 0 picks a free port; 8000 is Triton's.
    rest_port: int = -1
    runs: list[str] = dataclasses.field(default_factory=list)
    # Batching: a batch leaves when it holds max_batch_size samples or its first request waited max_queue_delay_ms.
    max_batch_size: int = 64
    max_queue_delay_ms: float = 5.0
    # Samples allowed to wait (all queues together); beyond it calls get RESOURCE_EXHAUSTED at once.
    max_queue_size: int = 1024
    max_samples_per_request: int = 1024
    stream_images_per_message: int = 64
    # Versions of each run kept loaded for pinned calls (the newest always stays).
    keep_versions: int = 3
    # Loads of versions that are not loaded, for pinned calls, per run and minute; more get RESOURCE_EXHAUSTED.
    max_reloads_per_minute: int = 6
    poll_seconds: float = 2.0
    device: str = "auto"
    torch_threads: int = 0
    png_threads: int = 2
    # At load time, serve the fastest form of the model (channels-last) that draws the same pixels (±1/255).
    fast_path: bool = True
    auth_token: str = secret()
    tls_cert: str = ""
    tls_key: str = ""
    grace_seconds: float = 20.0
    max_message_mb: int = 64
    keepalive_seconds: float = 30.0
    max_connection_age_seconds: float = 300.0
    # Translate budgets, checked from byte lengths and PNG headers before any image is decoded (docs/security.md).
    translate_max_image_bytes: int = 8 * 2**20
    translate_max_request_bytes: int = 32 * 2**20
    translate_max_image_pixels: int = 4096 * 4096
    translate_max_request_pixels: int = 64 * 2**20

    def __post_init__(self) -> None:
        positive = ("max_batch_size", "max_queue_size", "max_samples_per_request", "stream_images_per_message", "keep_versions", "png_threads", "max_message_mb", "max_reloads_per_minute")
        positive += ("translate_max_image_bytes", "translate_max_request_bytes", "translate_max_image_pixels", "translate_max_request_pixels")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"generator setting {name} must be >= 1, got {getattr(self, name)!r} (flag --{name.replace('_', '-')}, env {ENV_PREFIX}{name.upper()})")
        for name in ("max_queue_delay_ms", "poll_seconds", "grace_seconds", "keepalive_seconds", "max_connection_age_seconds"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"generator setting {name} must be >= 0, got {getattr(self, name)!r} (env {ENV_PREFIX}{name.upper()})")
        if self.max_samples_per_request > self.max_queue_size:
            raise ConfigError(
                f"max_samples_per_request ({self.max_samples_per_request}) exceeds max_queue_size ({self.max_queue_size}): "
                "such a request could never be admitted; raise --max-queue-size or lower --max-samples-per-request"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both --tls-cert and --tls-key (env GANWORKS_GENERATOR_TLS_CERT / _TLS_KEY)")
        if isinstance(self.runs, str):
            self.runs = [r.strip() for r in self.runs.split(",") if r.strip()]
