"""Settings: one object per process, from flags, then GANWORKS_* environment variables, then defaults.

A field marked secret may also come from a mounted file named by GANWORKS_<NAME>_FILE (Kubernetes
Secrets as volumes); secrets never appear in repr() or logs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from typing import Any, Mapping, TypeVar

from ganworks.errors import ConfigError

PREFIX = "GANWORKS_"
S = TypeVar("S")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def secret(default: str = "") -> Any:
    """A settings field whose value is a secret: hidden from repr, readable from a *_FILE."""
    return dataclasses.field(default=default, repr=False, metadata={"secret": True})


def env_name(field_name: str, prefix: str = PREFIX) -> str:
    return prefix + field_name.upper()


def _coerce(cls: type, name: str, type_name: str, raw: str, source: str) -> Any:
    base = type_name.replace(" ", "").replace("|None", "")
    try:
        if base == "bool":
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(f"expected one of {sorted(_TRUE | _FALSE - {''})}")
        if base == "int":
            return int(raw)
        if base == "float":
            return float(raw)
        if base in ("list[str]", "tuple[str,...]"):
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw
    except ValueError as exc:
        raise ConfigError(f"{source}={raw!r} is not a valid {base} for {cls.__name__}.{name}: {exc}") from None


def load_settings(cls: type[S], overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None, prefix: str = PREFIX) -> S:
    """Builds a settings dataclass: a non-None override wins, then the environment, then the default."""
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown settings for {cls.__name__}: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if overrides.get(f.name) is not None:
            values[f.name] = overrides[f.name]
            continue
        var = env_name(f.name, prefix)
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if var in env:
            values[f.name] = _coerce(cls, f.name, type_name, env[var], var)
        elif f.metadata.get("secret") and var + "_FILE" in env:
            path = pathlib.Path(env[var + "_FILE"])
            try:
                values[f.name] = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{var}_FILE points at {path}, which cannot be read: {exc.strerror}") from None
    return cls(**values)


def describe(settings: Any) -> dict[str, Any]:
    """The settings as a dict safe to log: secrets are masked."""
    out = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        out[f.name] = ("***" if value else "") if f.metadata.get("secret") else value
    return out


@dataclasses.dataclass
class StoreSettings:
    """Where artifacts live and how to reach an S3/MinIO endpoint."""

    store: str = "./ganworks-store"
    s3_endpoint: str = ""
    s3_access_key: str = secret()
    s3_secret_key: str = secret()
    s3_region: str = "us-east-1"
    s3_secure: bool = True
    s3_ca_file: str = ""
    retry_seconds: float = 30.0

    def __post_init__(self) -> None:
        # The usual AWS variables work too, so existing MinIO/S3 credentials can be reused as they are.
        if not self.s3_access_key:
            self.s3_access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
        if not self.s3_secret_key:
            self.s3_secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")


def public_fields(settings: Any) -> dict[str, Any]:
    """The fields that are not secret: what may travel through a control plane (Ray's recorded run config, a job spec)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if not f.metadata.get("secret")}


def store_settings_here(public: Mapping[str, Any]) -> StoreSettings:
    """StoreSettings in another process of the same deployment (a Ray worker): the given public fields, and the
    credentials from this process's own environment or *_FILE mounts, so they never pass through Ray."""
    from ganworks.telemetry import register_secrets

    settings = load_settings(StoreSettings, {k: v for k, v in public.items() if k in _PUBLIC_STORE_FIELDS})
    register_secrets([settings.s3_access_key, settings.s3_secret_key])
    if settings.store.startswith("s3://") and not (settings.s3_access_key and settings.s3_secret_key):
        logging.getLogger(__name__).warning(
            "no S3 credentials in this process's environment (GANWORKS_S3_ACCESS_KEY/_SECRET_KEY, their _FILE, or AWS_*); "
            "set them on every Ray node as on the driver: they are not sent through Ray"
        )
    return settings


_PUBLIC_STORE_FIELDS = {f.name for f in dataclasses.fields(StoreSettings) if not f.metadata.get("secret")}
