"""Minimal safetensors writer/reader (no `safetensors` package needed).

Format: 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} (padded with spaces
to a multiple of 8), then the raw little-endian tensor bytes; offsets are relative to the end of
the header.
"""
import json
import struct

import numpy as np

_DT = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "I32": np.int32}
_NP2ST = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64",
          np.dtype(np.int32): "I32"}


def save(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (written in sorted-name order, C-contiguous, little endian)."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        b = a.tobytes()
        header[name] = {"dtype": _NP2ST[np.dtype(a.dtype.str.replace(">", "<"))],
                        "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def load(path):
    """-> (dict name -> numpy array, metadata dict). Validates offsets and coverage."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = memoryview(buf)[8 + n:]
    out = {}
    spans = []
    for name, info in header.items():
        a, b = info["data_offsets"]
        dt = np.dtype(_DT[info["dtype"]]).newbyteorder("<")
        arr = np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"])
        assert arr.nbytes == b - a, name
        out[name] = arr.copy()
        spans.append((a, b))
    spans.sort()
    pos = 0
    for a, b in spans:
        assert a == pos, "gap/overlap in safetensors data"
        pos = b
    assert pos == len(data), "trailing bytes in safetensors data"
    return out, meta
