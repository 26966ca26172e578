"""Typed errors of the shared core; each message says what to do about it."""


class GanworksError(Exception):
    """Base of every error ganworks raises on purpose."""


class ConfigError(GanworksError, ValueError):
    """A setting, flag or URL is malformed or inconsistent."""


class StoreError(GanworksError):
    """The artifact store failed."""


class StoreConfigError(StoreError, ConfigError):
    """The store URL or its settings are malformed."""


class StoreEscapeError(StoreConfigError):
    """A key of the local store resolves (through a symbolic link) to a place outside the store's folder."""


class StoreAuthError(StoreError):
    """The store refused the credentials or the permission (permanent: retrying will not help)."""


class StoreUnavailableError(StoreError):
    """The store could not be reached within the retry budget (transient: it may work later)."""


class ObjectNotFoundError(StoreError, FileNotFoundError):
    """The object (or bucket) does not exist."""


class CheckpointError(GanworksError):
    """A snapshot is missing, malformed or cannot be used."""


class CheckpointIntegrityError(CheckpointError):
    """The weights do not match the sha256 recorded in the manifest."""


class SnapshotExistsError(CheckpointError):
    """A complete snapshot of that step already exists with other weights; published snapshots are immutable."""


class SnapshotMissingError(CheckpointError):
    """The snapshot is not (or not yet) in the store: worth asking again later, unlike a refused one."""


class CheckpointFormatError(CheckpointError):
    """The manifest is of an unknown format version or misses required fields."""


class ModelConfigError(GanworksError, ValueError):
    """An architecture name or hyperparameter is unknown or invalid."""


class DatasetError(GanworksError, ValueError):
    """A dataset cannot be read or has the wrong shape or content."""


def shown(value: object, limit: int = 64) -> str:
    """A request value as an error may quote it: its repr cut to `limit` characters (control characters, quotes and
    non-ASCII escaped), with the full length said when cut, so an error never grows with what a caller sent."""
    text = value if isinstance(value, str) else str(value)
    cut = repr(text[:limit]).encode("ascii", "backslashreplace").decode()
    return cut if len(text) <= limit else f"{cut}… ({len(text)} characters)"
