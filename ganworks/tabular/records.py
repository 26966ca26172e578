"""Table rows as bytes a backend reads without ganworks: an Apache Arrow IPC stream, or CSV.

Column types follow the schema: continuous → float64, integer → int64, categorical → utf8, boolean → bool.
The generator service answers GenerateRecords with these; `records_table` reads either back (tests, the demo).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc

from ganworks.tabular.data import Schema

ARROW, CSV = "arrow", "csv"
_TYPES = {"continuous": pa.float64(), "integer": pa.int64(), "categorical": pa.string(), "boolean": pa.bool_()}


def arrow_table(columns: dict[str, np.ndarray], schema: Schema) -> pa.Table:
    arrays = []
    for column in schema.columns:
        values = columns[column.name]
        if column.kind == "integer":
            values = np.round(np.asarray(values, dtype=np.float64)).astype(np.int64)
        elif column.kind == "categorical":
            values = np.asarray(values).astype(str)
        arrays.append(pa.array(values, type=_TYPES[column.kind]))
    return pa.Table.from_arrays(arrays, names=schema.names)


def encode(columns: dict[str, np.ndarray], schema: Schema, fmt: str) -> bytes:
    """The rows in `fmt` (ARROW: the IPC streaming format; CSV: header + one line per row, quoted where needed)."""
    table = arrow_table(columns, schema)
    sink = io.BytesIO()
    if fmt == ARROW:
        with pa_ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    elif fmt == CSV:
        pa_csv.write_csv(table, sink)
    else:
        raise ValueError(f"record format {fmt!r} is not {ARROW!r} or {CSV!r}")
    return sink.getvalue()


def records_table(data: bytes, fmt: str) -> pa.Table:
    """Reads what `encode` wrote."""
    if fmt == ARROW:
        return pa_ipc.open_stream(data).read_all()
    return pa_csv.read_csv(io.BytesIO(data))
