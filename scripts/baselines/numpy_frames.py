#!/usr/bin/env python3
"""The EMSim notes' frame algorithm (26 JUL 2021) in plain numpy, for the side-by-side figure in
docs/benchmarks.md. One electron at a time: pick a pixel and a library event, add the event's pixels
there; then Gaussian noise on the whole frame. Needs numpy and h5py (Debian: python3-numpy python3-h5py).

    python3 scripts/baselines/numpy_frames.py [--frames 20] [--library assets/events/default-300kev.h5]
Prints one JSON record: {"stage": "frames", "path": "numpy", "frames_per_s": ...}.
"""
import argparse, json, time
import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--frames", type=int, default=20)
ap.add_argument("--size", type=int, default=576)
ap.add_argument("--library", default="assets/events/default-300kev.h5")
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()

with h5py.File(a.library, "r") as f:
    offsets = f["events/offsets"][:].astype(np.int64)
    dx = f["pixels/dx_px"][:].astype(np.int64)
    dy = f["pixels/dy_px"][:].astype(np.int64)
    q = f["pixels/charge_e"][:].astype(np.float64)
events = [(dx[offsets[i]:offsets[i + 1]], dy[offsets[i]:offsets[i + 1]], q[offsets[i]:offsets[i + 1]])
          for i in range(len(offsets) - 1)]
rng = np.random.default_rng(a.seed)
S = a.size

def frame():
    img = np.zeros((S, S))
    ne = int(round(rng.normal(2927.294, 70.531)))
    for _ in range(ne):
        r, c = rng.integers(0, S, 2)
        ex, ey, eq = events[rng.integers(0, len(events))]
        rr, cc = r + ey, c + ex
        m = (rr >= 0) & (rr < S) & (cc >= 0) & (cc < S)
        np.add.at(img, (rr[m], cc[m]), eq[m])
    return img + rng.normal(0.0, 20.0, (S, S))

frame()  # warm-up
t = time.perf_counter()
for _ in range(a.frames):
    frame()
dt = time.perf_counter() - t
print(json.dumps({"stage": "frames", "path": "numpy", "height": S, "width": S, "frames": a.frames,
                  "median_s": dt, "frames_per_s": a.frames / dt}))
