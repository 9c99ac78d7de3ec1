"""Writes tests/data/stempy_counts.h5: frames counted by stempy's own classic counter (stempy 3.6.0,
`stempy.image.electron_count_frame`), so that emsim's re-implementation (`src/count/stempy.rs`)
is checked against it, event for event, in `cargo test`.

    python3.11 -m venv /tmp/stempy-venv && /tmp/stempy-venv/bin/pip install stempy==3.6.0 numpy h5py
    target/release/emsim frames --frames 4 --size 64x80 --seed 3 --out /tmp/fx.h5 -q --device cpu
    /tmp/stempy-venv/bin/python scripts/reference/stempy_fixture.py /tmp/fx.h5 tests/data/stempy_counts.h5

Datasets: `frames` (u16, the emsim frames: dark level 200 ADU, read noise 20 ADU), and per case
`case_K/dark` (float32 image, or absent), `case_K/events` (flat pixel indices, frame after frame)
and `case_K/offsets` (where each frame's events start), with the thresholds as attributes.
Case 0: no dark reference, thresholds in raw ADU (background 280, x-ray 65000). Case 1: a dark
reference with fractional values near 200 (stempy truncates it to u16), background 60, x-ray 500
(a cut that zeroes bright pixels). Case 2: a dark reference above some pixels (u16 subtraction
wraps) with the x-ray cut off, so the wrapped pixels count.
"""
import sys

import h5py
import numpy as np
import stempy.image as si

frames = h5py.File(sys.argv[1])["frames"][:]
assert frames.dtype == np.uint16
n, h, w = frames.shape
rng = np.random.default_rng(20261206)
cases = [
    (None, 280.0, 65000.0),
    ((195 + 10 * rng.random((h, w))).astype(np.float32), 60.0, 500.0),
    ((180 + 60 * rng.random((h, w))).astype(np.float32), 50.0, 70000.0),
]
with h5py.File(sys.argv[2], "w") as out:
    out.create_dataset("frames", data=frames)
    out.attrs["stempy"] = "3.6.0"
    for k, (dark, bg, xray) in enumerate(cases):
        g = out.create_group(f"case_{k}")
        g.attrs["background_threshold"] = bg
        g.attrs["xray_threshold"] = xray
        if dark is not None:
            g.create_dataset("dark", data=dark)
        events, offsets = [], [0]
        for f in frames:
            s = si.electron_count_frame(f, darkreference=dark, background_threshold=bg, xray_threshold=xray)
            e = np.asarray(s.data[0, 0], dtype=np.uint32)
            events.extend(e.tolist())
            offsets.append(len(events))
        g.create_dataset("events", data=np.asarray(events, dtype=np.uint32))
        g.create_dataset("offsets", data=np.asarray(offsets, dtype=np.uint64))
        print(k, "events per frame", np.diff(offsets))
