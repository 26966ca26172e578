"""Tabular datasets: CSV or Parquet files (locally or from a store URL) and built-in tables, each with a schema.

A table is a dict of equal-length numpy columns: continuous and integer columns are float64 (NaN when
missing), categorical ones are object arrays of strings, boolean ones are bool. The schema (each column's
kind, an optional target) is inferred and can be overridden by a small JSON file:

    {"columns": {"Cards": "categorical", "ID": "drop"}, "target": "default", "max_categories": 50}

given to load_table, or lying beside the table as its sidecar: `loans.csv` → `loans.schema.json` (in the same
folder, or under the same store prefix), which is how `ganworks train` and the evaluator both find it.

The dataset id hashes the values and the schema, as image datasets hash their pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import tempfile
import urllib.parse

import numpy as np

from ganworks.errors import DatasetError

KINDS = ("continuous", "integer", "categorical", "boolean")
NUMERIC_KINDS = ("continuous", "integer")
DISCRETE_KINDS = ("categorical", "boolean")
SPLITS = ("all", "train", "test")
TEST_FRACTION = 0.2
MAX_CATEGORIES = 100
BUILTINS = ("credit-default", "credit-card", "breast-cancer")
_TRUE_TEXT, _FALSE_TEXT = {"true", "t"}, {"false", "f"}


class TabularSchemaError(DatasetError):
    """The schema (inferred or from the schema file) does not fit the table; `column` names the culprit when one does."""

    def __init__(self, message: str, column: str | None = None):
        super().__init__(message)
        self.column = column


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of KINDS
    # Public metadata the schema file states (known without looking at the data): a numeric column's range, a
    # categorical column's levels. A private transformer uses them instead of spending budget to find them.
    range: tuple[float, float] | None = None
    levels: tuple[str, ...] | None = None

    def to_json(self) -> dict:
        out: dict = {"name": self.name, "kind": self.kind}
        if self.range is not None:
            out["range"] = list(self.range)
        if self.levels is not None:
            out["levels"] = list(self.levels)
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Column":
        return cls(data["name"], data["kind"], tuple(data["range"]) if data.get("range") is not None else None,
                   tuple(data["levels"]) if data.get("levels") is not None else None)


@dataclasses.dataclass(frozen=True)
class Schema:
    columns: tuple[Column, ...]
    target: str | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def kind(self, name: str) -> str:
        return next(c.kind for c in self.columns if c.name == name)

    def to_json(self) -> dict:
        return {"columns": [c.to_json() for c in self.columns], "target": self.target}

    @classmethod
    def from_json(cls, data: dict) -> "Schema":
        return cls(columns=tuple(Column.from_json(c) for c in data["columns"]), target=data.get("target"))


@dataclasses.dataclass
class TabularDataset:
    columns: dict[str, np.ndarray]
    schema: Schema
    id: str
    source: str
    dropped_rows: int = 0  # rows left out because a numeric value was missing

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[index] for name, values in self.columns.items()}


# ---- reading ----------------------------------------------------------------------------------------------------


def _raw_columns(arrow_table) -> dict[str, np.ndarray]:
    import pyarrow as pa

    out = {}
    for name, column in zip(arrow_table.column_names, arrow_table.columns):
        if pa.types.is_boolean(column.type):
            values = np.array([None if v is None else bool(v) for v in column.to_pylist()], dtype=object)
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            values = np.where(np.isnan(values), np.nan, values)
        else:
            values = np.array([None if v is None else str(v).strip() for v in column.to_pylist()], dtype=object)
            values[values == ""] = None
        out[str(name)] = values
    return out


def _read_file(path: pathlib.Path, source: str) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        elif path.suffix.lower() in (".csv", ".txt") or path.name.endswith(".csv.gz"):
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        else:
            raise DatasetError(f"{source}: a table must be a .csv or .parquet file, got {path.name!r}")
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{source}: cannot be read as a table ({exc})") from None
    if table.num_columns == 0 or table.num_rows == 0:
        raise DatasetError(f"{source}: the table is empty")
    return _raw_columns(table)


def _islp_csv(filename: str) -> pathlib.Path:
    """A CSV shipped inside the ISLP wheel, found without importing ISLP (whose imports are heavy)."""
    import importlib.metadata

    try:
        path = pathlib.Path(str(importlib.metadata.distribution("ISLP").locate_file(f"ISLP/data/{filename}")))
    except importlib.metadata.PackageNotFoundError:
        raise DatasetError(f"built-in table {filename} ships in the ISLP package: pip install --no-deps ISLP==0.6.0") from None
    if not path.exists():
        raise DatasetError(f"ISLP is installed but has no data/{filename}; reinstall ISLP==0.6.0")
    return path


def _builtin(name: str) -> tuple[dict[str, np.ndarray], dict]:
    """The built-in table and its schema overrides."""
    if name == "credit-default":
        return _read_file(_islp_csv("Default.csv"), name), {"target": "default"}
    if name == "credit-card":
        return _read_file(_islp_csv("Credit.csv"), name), {"columns": {"ID": "drop"}, "target": "Student"}
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    columns = {str(f): bunch.data[:, i].astype(np.float64) for i, f in enumerate(bunch.feature_names)}
    columns["diagnosis"] = np.array([str(bunch.target_names[t]) for t in bunch.target], dtype=object)
    return columns, {"columns": {f: "continuous" for f in bunch.feature_names}, "target": "diagnosis"}


def _local_path(spec: str, workdir: pathlib.Path) -> pathlib.Path:
    """The file a spec names: an s3:// object is downloaded into workdir first."""
    parsed = urllib.parse.urlsplit(spec)
    if parsed.scheme == "s3":
        return _fetch(parsed, workdir)
    return pathlib.Path(urllib.parse.unquote(parsed.path)) if parsed.scheme == "file" else pathlib.Path(spec).expanduser()


def _fetch(parsed: urllib.parse.SplitResult, workdir: pathlib.Path) -> pathlib.Path:
    from ganworks.store import open_store

    store = open_store(f"{parsed.scheme}://{parsed.netloc}")
    key = parsed.path.strip("/")
    dst = workdir / pathlib.PurePosixPath(key).name
    try:
        store.get_file(key, dst)
    except FileNotFoundError:
        raise DatasetError(f"{parsed.geturl()}: no such object in the store") from None
    sidecar = sidecar_name(key)
    try:  # the table's schema file, when it has one, travels with it
        store.get_file(sidecar, workdir / pathlib.PurePosixPath(sidecar).name)
    except FileNotFoundError:
        pass
    return dst


SIDECAR_SUFFIX = ".schema.json"


def sidecar_name(name: str) -> str:
    """The schema file that belongs to a table file: loans.csv, loans.csv.gz, loans.parquet → loans.schema.json."""
    for ending in (".csv.gz", ".csv", ".txt", ".parquet", ".pq"):
        if name.lower().endswith(ending):
            return name[: -len(ending)] + SIDECAR_SUFFIX
    return name + SIDECAR_SUFFIX


# ---- schema -------------------------------------------------------------------------------------------------------


def _infer_kind(values: np.ndarray) -> str:
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if values.dtype != object:
        numbers = values[~np.isnan(values)]
        if np.all(numbers == np.round(numbers)):
            return "boolean" if set(np.unique(numbers)) <= {0.0, 1.0} and len(np.unique(numbers)) == 2 else "integer"
        return "continuous"
    if all(isinstance(v, bool) for v in present):
        return "boolean"
    if {str(v).lower() for v in present} <= _TRUE_TEXT | _FALSE_TEXT:
        return "boolean"
    return "categorical"


def _load_overrides(schema_file: str | pathlib.Path | None, shown: str | None = None) -> dict:
    """The overrides in a schema file; shown names it in errors (a sidecar fetched from a store: its URL)."""
    if schema_file is None:
        return {}
    path = pathlib.Path(schema_file)
    shown = shown or str(path)
    if not path.exists():
        raise TabularSchemaError(f"schema file {shown!r} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TabularSchemaError(f"schema file {shown}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"columns", "target", "max_categories"}:
        raise TabularSchemaError(f"schema file {shown}: expected an object with 'columns', 'target' and/or 'max_categories'")
    return data


def _convert(name: str, values: np.ndarray, kind: str, source: str) -> np.ndarray:
    """The column in its kind's representation; TabularSchemaError when the values do not fit."""
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values]) if values.dtype == object else np.isnan(values)
    if kind in NUMERIC_KINDS:
        try:
            out = np.array([np.nan if m else float(v) for v, m in zip(values, missing)], dtype=np.float64)
        except (TypeError, ValueError):
            example = next(v for v, m in zip(values, missing) if not m and not _is_number(v))
            raise TabularSchemaError(f"{source}: column {name!r} is declared {kind} but holds {example!r}", name) from None
        if kind == "integer" and np.any(out[~missing] != np.round(out[~missing])):
            raise TabularSchemaError(f"{source}: column {name!r} is declared integer but holds fractions; declare it continuous", name)
        return out
    if kind == "boolean":
        out = np.empty(len(values), dtype=object)
        for i, (v, m) in enumerate(zip(values, missing)):
            text = None if m else str(v).strip().lower()
            if text is None:
                out[i] = None
            elif text in _TRUE_TEXT | {"1", "1.0"}:
                out[i] = True
            elif text in _FALSE_TEXT | {"0", "0.0"}:
                out[i] = False
            else:
                raise TabularSchemaError(f"{source}: column {name!r} is declared boolean but holds {v!r}; declare it categorical", name)
        return out
    out = np.empty(len(values), dtype=object)
    for i, (v, m) in enumerate(zip(values, missing)):
        out[i] = None if m else (str(int(v)) if isinstance(v, float) and v == int(v) else str(v))
    return out


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def build_schema(raw: dict[str, np.ndarray], overrides: dict, source: str, max_categories: int) -> tuple[Schema, dict[str, np.ndarray]]:
    """The schema (inferred kinds with overrides applied) and the columns converted to it."""
    declared = overrides.get("columns", {})
    if not isinstance(declared, dict):
        raise TabularSchemaError(f"{source}: schema 'columns' must map column names to kinds")
    unknown = sorted(set(declared) - set(raw))
    if unknown:
        raise TabularSchemaError(f"{source}: the schema names column(s) {unknown} that the table does not have; columns: {list(raw)}", unknown[0])
    columns, converted = [], {}
    for name, values in raw.items():
        spec = declared.get(name)
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        if kind == "drop":
            continue
        if kind is not None and kind not in KINDS:
            raise TabularSchemaError(f"{source}: column {name!r} has unknown kind {kind!r}; use one of {KINDS} or 'drop'", name)
        if isinstance(spec, dict) and set(spec) - {"kind", "range", "levels"}:
            raise TabularSchemaError(f"{source}: column {name!r} has unknown schema key(s) {sorted(set(spec) - {'kind', 'range', 'levels'})}; "
                                     "a column takes 'kind', 'range' (numbers) and 'levels' (categories)", name)
        missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values]) if values.dtype == object else np.isnan(values)
        if missing.all():
            raise TabularSchemaError(f"{source}: column {name!r} is missing in every row; drop it in the schema file ({{\"columns\": {{\"{name}\": \"drop\"}}}})", name)
        kind = kind or _infer_kind(values)
        values = _convert(name, values, kind, source)
        if kind == "categorical":
            levels = len({v for v in values if v is not None})
            if levels > max_categories:
                raise TabularSchemaError(
                    f"{source}: categorical column {name!r} has {levels} levels, more than max_categories={max_categories}; "
                    f"declare it continuous/integer, drop it, or raise max_categories", name)
        public = _public_metadata(name, kind, spec if isinstance(spec, dict) else {}, values, source)
        columns.append(Column(name, kind, **public))
        converted[name] = values
    target = overrides.get("target")
    if target is not None and target not in converted:
        raise TabularSchemaError(f"{source}: target column {target!r} is not a column of the table; columns: {list(converted)}", target)
    if not columns:
        raise TabularSchemaError(f"{source}: the schema drops every column")
    return Schema(tuple(columns), target), converted


def _public_metadata(name: str, kind: str, spec: dict, values: np.ndarray, source: str) -> dict:
    """A column's declared range or levels, checked against its kind and its values (a value outside them is refused:
    what is declared public must hold for the data)."""
    out: dict = {}
    if "range" in spec:
        bounds = spec["range"]
        if kind not in NUMERIC_KINDS or not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                                              and np.isfinite(bounds).all() and bounds[0] < bounds[1]):
            raise TabularSchemaError(f"{source}: column {name!r}: 'range' must be [low, high] with low < high, for a continuous or integer column", name)
        low, high = float(bounds[0]), float(bounds[1])
        present = values[~np.isnan(values)]
        outside = present[(present < low) | (present > high)]
        if len(outside):
            raise TabularSchemaError(f"{source}: column {name!r} holds {float(outside[0]):g}, outside its declared range [{low:g}, {high:g}]", name)
        out["range"] = (low, high)
    if "levels" in spec:
        levels = spec["levels"]
        if kind != "categorical" or not (isinstance(levels, list) and levels and all(isinstance(v, str) for v in levels) and len(set(levels)) == len(levels)):
            raise TabularSchemaError(f"{source}: column {name!r}: 'levels' must be a list of distinct strings, for a categorical column", name)
        unknown = sorted({"<missing>" if v is None else v for v in values} - set(levels))
        if unknown:
            raise TabularSchemaError(f"{source}: column {name!r} holds {unknown[0]!r}, which its declared levels do not list "
                                     "(a missing value is the level '<missing>')", name)
        out["levels"] = tuple(levels)
    return out


def _drop_incomplete_rows(schema: Schema, columns: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Rows with a missing number are left out; a missing category becomes its own level, '<missing>'."""
    keep = np.ones(len(next(iter(columns.values()))), dtype=bool)
    for column in schema.columns:
        values = columns[column.name]
        if column.kind in NUMERIC_KINDS:
            keep &= ~np.isnan(values)
        elif column.kind == "categorical":
            values[np.array([v is None for v in values])] = "<missing>"
        else:
            keep &= np.array([v is not None for v in values])
    out = {name: (values[keep] if values.dtype != object else values[keep]) for name, values in columns.items()}
    for column in schema.columns:
        if column.kind == "boolean":
            out[column.name] = out[column.name].astype(bool)
    return out, int((~keep).sum())


def split_index(n: int, split: str) -> np.ndarray:
    """A fixed, seed-independent partition: the same rows are held out in every run."""
    order = np.random.RandomState(0).permutation(n)
    cut = n - int(round(n * TEST_FRACTION))
    return {"all": np.arange(n), "train": np.sort(order[:cut]), "test": np.sort(order[cut:])}[split]


def table_id(name: str, schema: Schema, columns: dict[str, np.ndarray], split: str) -> str:
    digest = hashlib.sha256(json.dumps(schema.to_json(), sort_keys=True).encode())
    for column in schema.columns:
        values = columns[column.name]
        digest.update(np.ascontiguousarray(values).tobytes() if column.kind in NUMERIC_KINDS else "\x1f".join(map(str, values)).encode())
    rows = len(columns[schema.columns[0].name])
    return f"{name}-{rows}x{len(schema.columns)}-{split}-{digest.hexdigest()[:12]}"


def load_table(spec: str, schema_file: str | pathlib.Path | None = None, split: str = "all", max_categories: int | None = None) -> TabularDataset:
    """Loads a built-in table (`credit-default`, `credit-card`, `breast-cancer`), a CSV/Parquet file, or one from a store URL."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {SPLITS}")
    overrides = _load_overrides(schema_file)
    with tempfile.TemporaryDirectory(prefix="ganworks-table-") as tmp:
        if spec in BUILTINS:
            raw, builtin = _builtin(spec)
            overrides = {**builtin, **overrides, "columns": {**builtin.get("columns", {}), **overrides.get("columns", {})}}
            name = spec
        else:
            path = _local_path(spec, pathlib.Path(tmp))
            if not path.is_file():
                raise DatasetError(f"table {spec!r} not found: give one of {BUILTINS}, a .csv or .parquet file, or a store URL")
            raw, name = _read_file(path, spec), path.name.split(".")[0] or "table"
            sidecar = path.with_name(sidecar_name(path.name))
            if schema_file is None and sidecar.is_file():
                overrides = _load_overrides(sidecar, shown=sidecar_name(spec))
    limit = max_categories if max_categories is not None else int(overrides.get("max_categories", MAX_CATEGORIES))
    schema, converted = build_schema(raw, overrides, spec, limit)
    columns, dropped = _drop_incomplete_rows(schema, converted)
    if not len(next(iter(columns.values()))):
        raise DatasetError(f"{spec}: every row has a missing number; nothing is left to train on")
    index = split_index(len(next(iter(columns.values()))), split)
    columns = {name_: values[index] for name_, values in columns.items()}
    return TabularDataset(columns=columns, schema=schema, id=table_id(name, schema, columns, split), source=spec, dropped_rows=dropped)
