"""IDX files (the MNIST family's format), plain or gzip-compressed, read with every header field checked.

Layout: two zero bytes, a type byte (0x08 = unsigned byte, the only type the image datasets use), the number
of dimensions, that many big-endian uint32 sizes, then the values in C order.
"""

from __future__ import annotations

import gzip
import pathlib
import struct
import zlib

import numpy as np

from ganworks.errors import DatasetError

UBYTE = 0x08


class IDXFormatError(DatasetError):
    """An IDX file is truncated, corrupt, or not the shape it should be; the message names the file."""


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IDXFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise IDXFormatError(f"{path}: the gzip stream is truncated or corrupt ({exc}); reinstall the dataset or download the file again") from None


def read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions as a uint8 array."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: {len(data)} bytes is too short for an IDX header; the file is truncated")
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IDXFormatError(f"{path}: not an IDX file (magic {data[:4].hex()}, expected 0000{UBYTE:02x}{ndim:02x})")
    if dtype != UBYTE:
        raise IDXFormatError(f"{path}: IDX type 0x{dtype:02x} is not supported; expected 0x08 (unsigned byte)")
    if dims != ndim:
        raise IDXFormatError(f"{path}: has {dims} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path}: the header is cut short ({len(data)} bytes, needs {header}); the file is truncated")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise IDXFormatError(f"{path}: the header says {'×'.join(map(str, shape))} = {expected} values, the file holds {len(data) - header}; it is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
