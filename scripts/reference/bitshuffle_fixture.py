"""Writes tests/data/bitshuffle_hdf5plugin.h5: chunks coded by the bitshuffle C library (through
hdf5plugin), with the same values stored uncompressed beside them, so that emsim's own
bitshuffle/LZ4 decoder is checked against the reference implementation in `cargo test`.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install h5py hdf5plugin numpy
    /tmp/venv/bin/python scripts/reference/bitshuffle_fixture.py tests/data/bitshuffle_hdf5plugin.h5

Datasets (each `NAME` beside `NAME_plain`, uncompressed):
- `u16_short`: 3 frames of 37 x 53 u16 (1,961 values a chunk: one short block, 1 value raw);
- `u16_blocks`: 2 frames of 70 x 61 u16 (4,270 values: a full block, a short one, 6 values raw);
- `f32`: 2 frames of 20 x 30 f32 (4-byte values);
- `u16_transpose_only`: the bit transpose without LZ4, blocks of 64 values.
"""
import sys

import h5py
import hdf5plugin
import numpy as np

rng = np.random.default_rng(20261206)


def frames(shape):
    """Noise around a dark level with a few bright clusters, like detector frames."""
    v = 200 + 20 * rng.standard_normal(shape)
    hits = rng.random(shape) < 0.01
    v[hits] += rng.exponential(400, hits.sum())
    return np.clip(np.rint(v), 0, 65535).astype(np.uint16)


with h5py.File(sys.argv[1], "w") as f:
    data = {
        "u16_short": (frames((3, 37, 53)), hdf5plugin.Bitshuffle(cname="lz4")),
        "u16_blocks": (frames((2, 70, 61)), hdf5plugin.Bitshuffle(cname="lz4")),
        "f32": (rng.standard_normal((2, 20, 30)).astype(np.float32) * 50, hdf5plugin.Bitshuffle(cname="lz4")),
        "u16_transpose_only": (frames((2, 16, 20)), hdf5plugin.Bitshuffle(nelems=64, cname="none")),
    }
    for name, (v, filt) in data.items():
        f.create_dataset(name, data=v, chunks=(1,) + v.shape[1:], **filt)
        f.create_dataset(name + "_plain", data=v)
        print(name, f[name]._filters)
