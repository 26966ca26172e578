"""What every `ganworks` command shares: store flags, the typed flag error, and SIGTERM as an orderly stop.

Services and the orchestration build their commands from these; the `ganworks` dispatcher (`ganworks.cli`)
only lists and runs the commands, and nothing imports it.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
from typing import Any

from ganworks.errors import GanworksError


class CommandError(GanworksError):
    """A command-line argument is wrong; the message names the flag."""


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (Kubernetes, `ganworks up` stopping its children) ends in the same orderly stop as Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)


def read_flag_file(flag: str, path: str | None) -> bytes | None:
    """The bytes of the file a flag names (None without the flag); CommandError naming the flag otherwise."""
    if not path:
        return None
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"{flag} {path}: cannot read it ({exc.strerror})") from None


def read_token_file(flag: str, path: str | None) -> str | None:
    """The bearer token in the file a flag names (None without the flag); CommandError if unreadable or empty."""
    data = read_flag_file(flag, path)
    if data is None:
        return None
    token = data.decode("utf-8", errors="replace").strip()
    if not token:
        raise CommandError(f"{flag} {path} is empty")
    return token


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("store")
    group.add_argument("--store", help="store URL: a folder, file:///path or s3://bucket/prefix (env GANWORKS_STORE; default ./ganworks-store)")
    group.add_argument("--s3-endpoint", help="S3/MinIO endpoint host:port or http(s)://host:port (env GANWORKS_S3_ENDPOINT)")
    group.add_argument("--s3-region", help="S3 region (env GANWORKS_S3_REGION; default us-east-1)")


def store_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"store": args.store, "s3_endpoint": getattr(args, "s3_endpoint", None), "s3_region": getattr(args, "s3_region", None)}


def open_store_from_args(args: argparse.Namespace):
    from ganworks.settings import StoreSettings, load_settings
    from ganworks.store import open_store
    from ganworks.telemetry import register_secrets

    settings = load_settings(StoreSettings, store_overrides(args))
    register_secrets([settings.s3_secret_key])
    return open_store(settings=settings)
