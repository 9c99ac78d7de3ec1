#!/usr/bin/env python3
"""stempy's electron counter on an emsim frames file, for the side-by-side figure in docs/benchmarks.md.

    python scripts/baselines/stempy_count.py FRAMES.h5 [--frames N] [--repeats 3] [--workers 1]
        [--n-sigma 4] [--sigma-e S] [--xray-threshold-e 0] [--thresholds fixed|stempy]
        [--stempy-out counts.h5]

Needs stempy 3.6.0 + numpy + h5py (setup: scripts/baselines/README.md). Prints one JSON line:
{"stage": "count", "path": "stempy", "frames": F, "height": H, "width": W, "frames_per_s": ...,
 "electrons_per_frame": ..., ...extra keys describing the settings}.

What is called
--------------
`stempy.image.electron_count_frame(frame, options=opts)`, stempy's public per-frame counter (it
calls the C++ `stempy._image.electron_count_frame(frame_u16, (W, H), ElectronCountOptionsClassic)`
and wraps the result in a 1x1-scan SparseArray). Per pixel it does, in C++ (stempy/electron.cpp,
`electronCount` + `maximalPoints`, uint16 template):
    v = frame - dark_reference            (only when a dark reference is given)
    v = 0 if v <= background_threshold or v >= x_ray_threshold
then reports every pixel strictly greater than all of its (up to) 8 neighbours, as the flat index
row * W + col. Single-threaded; the binding holds the GIL (2 Python threads gave no speed-up on the
2-core machine), so `--workers N` uses N forked processes, each counting a share of the frames.

Settings and why they match emsim's counter
-------------------------------------------
emsim frames are ADU = (charge_e + noise) * gain_adu_per_e + offset_adu (docs/formats.md). emsim
`count` thresholds at `background_threshold_n_sigma` (4) x noise sigma (20 e from the file's
`noise_sigma_e`), with the x-ray cut off by default (`xray_threshold_e = 0`) and dark = offset.
Here (default `--thresholds fixed`):
  * background_threshold = n_sigma * sigma_e * gain_adu_per_e   (80 ADU for the defaults), in ADU
    after dark subtraction, the same as stempy's own thresholds (which it fits in raw ADU);
  * dark_reference = offset_adu (a constant image; none when the offset is 0);
  * x_ray_threshold = 65536 - dark, i.e. off (see the uint16 pitfall below), or
    `--xray-threshold-e X` electrons (X * gain ADU) when given;
  * no gain mask (the gain is uniform, so it is folded into the ADU thresholds), no row-dark.
`--thresholds stempy` instead lets stempy estimate both thresholds the way `stempy.image.electron_count`
does (`calculate_thresholds` on number_of_samples=40 randomly drawn frames, histogram + Gaussian fit:
background = fitted mean + 4 fitted sigma, x-ray = sample mean + 10 sample sigma). That estimate is a
one-off calibration and is not included in frames_per_s (it is reported as `threshold_s`). Note that
stempy's x-ray cut (~740 ADU = 740 e here) zeroes the brightest pixel of many 300 keV electrons, which
is why emsim (and the default mode here) keeps the x-ray cut off.

uint16 conversion (done once, before timing): stempy's per-frame counter only takes uint16 frames.
Frames are converted as rint(clip(frame, 0, 65535)) when the offset is 0, otherwise
rint(clip(frame - offset + dark, 0, 65535)) with dark = round(offset). Clipping negative ADU to 0 changes
no count (everything <= background threshold is zeroed anyway); rounding to whole ADU moves pixels
within 0.5 ADU of the threshold and makes exact ties between neighbours (which stempy's strict `>`
rejects) a little more frequent: on 32 default frames, stempy on uint16 found 2829.6 electrons/frame
against 2835.8 for the same rule applied to the float32 frames (truth 2936.5).
uint16 pitfall: with a dark reference stempy subtracts in uint16, so a pixel below the dark wraps to
~65535 and would be counted unless x_ray_threshold <= 65536 - dark; this script always caps it there.

Timing: frames are in memory (already uint16); one warm-up pass over up to 8 frames, then `--repeats`
passes over all frames; frames_per_s = frames / median pass time. Wall clock, time.perf_counter.
"""
import argparse
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from importlib.metadata import version

import h5py
import numpy as np

import stempy.image as simage
import stempy.io as sio
from stempy import _image

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("frames_file", help="emsim frames HDF5 file (/frames, (F, H, W), ADU)")
ap.add_argument("--dataset", default="frames", help="frames dataset (default: frames)")
ap.add_argument("--frames", type=int, default=0, help="count only the first N frames (0 = all)")
ap.add_argument("--repeats", type=int, default=3, help="timed passes over all frames (median reported)")
ap.add_argument("--workers", type=int, default=1, help="processes (stempy's counter holds the GIL)")
ap.add_argument("--n-sigma", type=float, default=4.0, help="background threshold in noise sigmas")
ap.add_argument("--sigma-e", type=float, default=None, help="noise sigma, electrons (default: noise_sigma_e attr)")
ap.add_argument("--xray-threshold-e", type=float, default=0.0, help="x-ray cut in electrons (0 = off)")
ap.add_argument("--thresholds", choices=["fixed", "stempy"], default="fixed",
                help="fixed: n_sigma*sigma (emsim's rule); stempy: stempy's calculate_thresholds estimate")
ap.add_argument("--number-of-samples", type=int, default=40, help="--thresholds stempy: frames sampled")
ap.add_argument("--xray-n-sigma", type=float, default=10.0, help="--thresholds stempy: x-ray n sigma")
ap.add_argument("--stempy-out", default=None,
                help="also write the counts with stempy's own SparseArray.write_to_hdf5 (reference file)")
a = ap.parse_args()

if a.repeats < 1 or a.workers < 1 or a.frames < 0:
    sys.exit("error: --repeats and --workers must be >= 1, --frames >= 0")

# ---- load (not timed) ------------------------------------------------------------------------
with h5py.File(a.frames_file, "r") as f:
    if a.dataset not in f:
        sys.exit(f"error: {a.frames_file} has no /{a.dataset} dataset")
    ds = f[a.dataset]
    if ds.ndim != 3:
        sys.exit(f"error: /{a.dataset} has shape {ds.shape}, expected (F, H, W)")
    n = ds.shape[0] if a.frames == 0 else min(a.frames, ds.shape[0])
    raw = ds[:n]
    gain = float(ds.attrs.get("gain_adu_per_e", 1.0))
    offset = float(ds.attrs.get("offset_adu", 0.0))
    sigma_e = a.sigma_e if a.sigma_e is not None else float(ds.attrs.get("noise_sigma_e", float("nan")))
    truth_per_frame = None
    if "truth/offsets" in f:
        off = f["truth/offsets"][: n + 1]
        truth_per_frame = float(off[-1] - off[0]) / n
if n == 0:
    sys.exit("error: no frames")
if not math.isfinite(sigma_e) or sigma_e <= 0:
    sys.exit("error: no noise_sigma_e attribute on /frames; pass --sigma-e")
F, H, W = raw.shape

# ---- convert to uint16 once (not timed) ------------------------------------------------------
dark = int(round(offset)) if offset > 0 else 0
if raw.dtype == np.uint16 and offset == dark:
    frames = np.ascontiguousarray(raw)
else:
    x = raw.astype(np.float64)
    if offset != 0:
        x += dark - offset
    frames = np.rint(np.clip(x, 0, 65535)).astype(np.uint16)
    del x
frames_shape_wh = (W, H)  # stempy's C++ takes (width, height)
xray_cap = 65536.0 - dark  # stempy subtracts the dark in uint16: values below it wrap to >= this

# ---- thresholds ------------------------------------------------------------------------------
threshold_s = None
if a.thresholds == "fixed":
    background_adu = a.n_sigma * sigma_e * gain
    xray_adu = a.xray_threshold_e * gain if a.xray_threshold_e > 0 else xray_cap
else:
    # stempy's estimator, as stempy.image.electron_count calls it. It runs on the raw (no dark)
    # integers so that its uint16 dark subtraction cannot wrap; with no dark, negative noise would
    # be clipped at 0, so a pedestal keeps the whole noise peak above 0. Results are shifted back.
    ped = int(math.ceil(10 * sigma_e * gain))
    t0 = time.perf_counter()
    sample = np.rint(np.clip(raw.astype(np.float64) - offset + ped, 0, 65535)).astype(np.uint16)
    reader = sio.PyReader(sample, np.arange(F), (F, 1), F, F)
    block = next(reader)
    res = _image.calculate_thresholds([block._block], a.number_of_samples, a.n_sigma, a.xray_n_sigma)
    threshold_s = time.perf_counter() - t0
    background_adu = res.background_threshold - ped
    xray_adu = min(res.xray_threshold - ped, xray_cap)
    del sample, reader, block
del raw

opts = _image.ElectronCountOptionsClassic()
opts.dark_reference = np.full((H, W), dark, np.float32) if dark else None
opts.background_threshold = float(background_adu)
opts.x_ray_threshold = float(xray_adu)
opts.gain = None
opts.apply_row_dark_subtraction = False
opts.apply_row_dark_use_mean = False
opts.optimized_mean = 0.0


def count_range(lo_hi):
    lo, hi = lo_hi
    return [simage.electron_count_frame(frames[k], options=opts).data[0, 0] for k in range(lo, hi)]


def chunks(total, parts):
    edges = [total * i // parts for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts) if edges[i] < edges[i + 1]]


# ---- warm-up, then timed passes ----------------------------------------------------------------
pool = mp.get_context("fork").Pool(a.workers) if a.workers > 1 else None  # forked after `frames`
try:
    warm = chunks(min(F, 8), a.workers)
    (pool.map(count_range, warm) if pool else [count_range(c) for c in warm])
    work = chunks(F, a.workers)
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        parts = pool.map(count_range, work) if pool else [count_range(c) for c in work]
        times.append(time.perf_counter() - t0)
finally:
    if pool:
        pool.close()
        pool.join()
events = [e for p in parts for e in p]
assert len(events) == F
median_s = statistics.median(times)

if a.stempy_out:
    data = np.empty((F, 1), dtype=object)
    for k, e in enumerate(events):
        data[k, 0] = np.asarray(e, dtype=np.uint32)
    sa = sio.SparseArray(data=data, scan_shape=(1, F), frame_shape=(H, W),
                         metadata={"emsim_baseline": {"frames_file": a.frames_file,
                                                      "background_threshold_adu": float(background_adu),
                                                      "x_ray_threshold_adu": float(xray_adu),
                                                      "dark_adu": dark}})
    import os
    if os.path.exists(a.stempy_out):
        os.remove(a.stempy_out)  # write_to_hdf5 appends ("a" mode)
    sa.write_to_hdf5(a.stempy_out)

rec = {"stage": "count", "path": "stempy", "frames": F, "height": H, "width": W,
       "frames_per_s": F / median_s, "electrons_per_frame": sum(len(e) for e in events) / F,
       "median_s": median_s, "repeats": a.repeats, "workers": a.workers,
       "function": "stempy.image.electron_count_frame", "stempy_version": version("stempy"),
       "thresholds": a.thresholds, "background_threshold_adu": float(background_adu),
       "x_ray_threshold_adu": float(xray_adu), "dark_adu": dark, "gain_adu_per_e": gain,
       "noise_sigma_e": sigma_e}
if threshold_s is not None:
    rec["threshold_s"] = threshold_s
if truth_per_frame is not None:
    rec["truth_electrons_per_frame"] = truth_per_frame
print(json.dumps(rec))
