"""TensorFlow.js weights: a ``*-weights_manifest.json`` and its ``.bin`` shards, as numpy arrays.

The format (tfjs-converter's ``weights_manifest.json``): a list of groups, each with ``paths``
(shard files, relative to the manifest, concatenated in order) and ``weights`` (``name``, ``shape``,
``dtype``, optional ``quantization``). Values follow each other in the concatenated shards in the
order listed, little-endian. A quantized entry stores ``quantization.dtype`` (uint8 or uint16)
codes ``q`` with ``value = q * scale + min`` (affine; tfjs' ``io.decodeWeights``) or, for float16,
IEEE half floats. TF.js's reader is JavaScript, so the few lines of decoding are written here; numpy
does the arithmetic in float64, then the value is rounded to the entry's dtype as TF.js stores it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_CODES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def read_manifest(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every weight of the TF.js manifest ``path``, dequantized, by name."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"TF.js weights manifest not found: {path}")
    try:
        groups = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MobileNetsError(f"{path} is not a TF.js weights manifest (not JSON: {exc})") from None
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "paths" in g and "weights" in g
                                               for g in groups):
        raise MobileNetsError(f"{path} is not a TF.js weights manifest (no list of groups with paths and weights)")
    out: dict[str, np.ndarray] = {}
    for group in groups:
        shards = []
        for name in group["paths"]:
            shard = path.parent / name
            if not shard.is_file():
                raise DataNotFoundError(f"weights shard {shard} (listed in {path.name}) not found")
            shards.append(shard.read_bytes())
        data = b"".join(shards)
        offset = 0
        for spec in group["weights"]:
            name, shape, dtype = spec["name"], [int(d) for d in spec["shape"]], spec["dtype"]
            if dtype not in _DTYPES:
                raise MobileNetsError(f"{path.name}: weight {name} has dtype {dtype!r}, which the reader does not take")
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            stored = np.dtype(_CODES[quant["dtype"]] if quant else _DTYPES[dtype]).newbyteorder("<")
            size = count * stored.itemsize
            if offset + size > len(data):
                raise MobileNetsError(f"{path.name}: the shards end inside weight {name} "
                                      f"(need {offset + size} bytes, have {len(data)})")
            raw = np.frombuffer(data, stored, count, offset)
            offset += size
            if quant and quant["dtype"] != "float16":
                values = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
            else:
                values = raw
            values = np.rint(values) if dtype == "int32" and quant else values
            out[name] = np.asarray(values).astype(_DTYPES[dtype]).reshape(shape)
        if offset != len(data):
            raise MobileNetsError(f"{path.name}: {len(data) - offset} bytes of the shards are not described by the manifest")
    return out


__all__ = ["read_manifest"]
