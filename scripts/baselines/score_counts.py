#!/usr/bin/env python3
"""Score electron counters against the truth of an emsim frames file, all with one matcher.

    python scripts/baselines/score_counts.py FRAMES.h5 [--emsim COUNTS.h5 ...] [--stempy]
        [--radius-px 1.5] [--n-sigma 4] [--frames N] [--json]

Needs numpy and h5py; `--stempy` also needs stempy 3.6.0 (the stempy venv of
scripts/baselines/README.md). Example:

    target/release/emsim frames --frames 32 --seed 1 --out f32.h5
    target/release/emsim count f32.h5 --method c3x3,c3x3t --out 'd-{method}.h5'
    /tmp/stempy-venv/bin/python scripts/baselines/score_counts.py f32.h5 \\
        --emsim d-c3x3.h5 d-c3x3t.h5 --stempy

Inputs
------
* FRAMES.h5: an `emsim frames` HDF5 file. The true electrons are `/truth/x_px`, `/truth/y_px`
  (incidence points, pixels), split into frames by `/truth/offsets`.
* `--emsim COUNTS.h5 ...`: `emsim count --out` files made from FRAMES.h5. The found electrons are
  `/electrons/x_px`, `/electrons/y_px`, split into frames by `/electrons/offsets`. A file whose
  `frames_seed` / `frames_config_json` differ from FRAMES.h5 is refused.
* `--stempy`: runs `stempy.image.electron_count_frame` on every frame with the settings of
  `stempy_count.py --thresholds fixed` (its default): dark reference = the file's `offset_adu`,
  background threshold = `--n-sigma` x `noise_sigma_e` x `gain_adu_per_e` ADU, x-ray cut off,
  no gain mask, no row-dark; frames converted to uint16 as `stempy_count.py` does. stempy reports
  pixels, not positions, so each found electron is placed at its pixel's centre.

Coordinates
-----------
emsim's convention (docs/formats.md): x = column, y = row, in pixels; pixel (row r, col c) spans
[c, c+1) x [r, r+1), so its centre is (c + 0.5, r + 0.5). A stempy flat index i = r * W + c is
therefore scored at x = c + 0.5, y = r + 0.5.

Scoring
-------
Per frame, all (found, true) pairs closer than or at `--radius-px` are sorted by distance (ties by
found index, then true index) and taken greedily: a pair is matched when neither point is matched
yet. Per counter: true electrons, found, matched, recall = matched / true, precision =
matched / found, and the mean and median distance of the matched pairs (px). Greedy matching can
pair a little fewer points than the optimal matching of `emsim eval`, so numbers may differ from
it slightly; every counter here is scored the same way.

Output: a table on stdout, or with `--json` one JSON object
{"frames_file", "frames", "radius_px", "true_electrons", "counters": [{"name", "source",
 "found", "matched", "recall", "precision", "mean_err_px", "median_err_px", ...}, ...]}.
"""
import argparse
import json
import math
import os
import sys
import time

import h5py
import numpy as np


def load_truth(path, n_frames):
    with h5py.File(path, "r") as f:
        if "truth/offsets" not in f:
            sys.exit(f"error: {path} has no /truth (not an emsim frames file?)")
        off = f["truth/offsets"][:].astype(np.int64)
        total = len(off) - 1
        n = total if n_frames == 0 else min(n_frames, total)
        x = f["truth/x_px"][off[0]:off[n]].astype(np.float64)
        y = f["truth/y_px"][off[0]:off[n]].astype(np.float64)
        ds = f["frames"]
        meta = {"seed": f.attrs.get("seed"), "config_json": f.attrs.get("config_json"),
                "height": ds.shape[1], "width": ds.shape[2],
                "gain": float(ds.attrs.get("gain_adu_per_e", 1.0)),
                "offset": float(ds.attrs.get("offset_adu", 0.0)),
                "sigma_e": float(ds.attrs.get("noise_sigma_e", float("nan")))}
    off = off[: n + 1] - off[0]
    return n, [(x[off[k]:off[k + 1]], y[off[k]:off[k + 1]]) for k in range(n)], meta


def load_emsim(path, n, meta):
    with h5py.File(path, "r") as f:
        if f.attrs.get("schema") != "emsim-counts/1":
            sys.exit(f"error: {path} is not an emsim counts file (schema {f.attrs.get('schema')!r})")
        for key, mine in (("frames_seed", "seed"), ("frames_config_json", "config_json")):
            if key in f.attrs and meta[mine] is not None and f.attrs[key] != meta[mine]:
                sys.exit(f"error: {path}: {key} differs from the frames file's; counted from other frames")
        if int(f.attrs["height"]) != meta["height"] or int(f.attrs["width"]) != meta["width"]:
            sys.exit(f"error: {path}: frame size differs from the frames file's")
        off = f["electrons/offsets"][:].astype(np.int64)
        if len(off) - 1 < n:
            sys.exit(f"error: {path} counts {len(off) - 1} frames, fewer than the {n} scored")
        x = f["electrons/x_px"][off[0]:off[n]].astype(np.float64)
        y = f["electrons/y_px"][off[0]:off[n]].astype(np.float64)
        method = f.attrs.get("method", "?")
        params = json.loads(f.attrs.get("params_json", "{}") or "{}")
    off = off[: n + 1] - off[0]
    info = {"source": "emsim", "file": path, "method": method}
    if "suppress_px" in params:
        info["suppress_px"] = params["suppress_px"]
    return [(x[off[k]:off[k + 1]], y[off[k]:off[k + 1]]) for k in range(n)], info


def run_stempy(path, n, meta, n_sigma):
    """stempy_count.py's default (--thresholds fixed) settings, on every frame."""
    import stempy.image as simage
    from stempy import _image
    from importlib.metadata import version

    H, W, gain, offset, sigma_e = (meta[k] for k in ("height", "width", "gain", "offset", "sigma_e"))
    if not math.isfinite(sigma_e) or sigma_e <= 0:
        sys.exit("error: no noise_sigma_e attribute on /frames")
    with h5py.File(path, "r") as f:
        raw = f["frames"][:n]
    dark = int(round(offset)) if offset > 0 else 0
    if raw.dtype == np.uint16 and offset == dark:
        frames = np.ascontiguousarray(raw)
    else:
        xf = raw.astype(np.float64)
        if offset != 0:
            xf += dark - offset
        frames = np.rint(np.clip(xf, 0, 65535)).astype(np.uint16)
        del xf
    del raw
    opts = _image.ElectronCountOptionsClassic()
    opts.dark_reference = np.full((H, W), dark, np.float32) if dark else None
    opts.background_threshold = float(n_sigma * sigma_e * gain)
    opts.x_ray_threshold = float(65536.0 - dark)  # off; stempy's uint16 dark subtraction wraps above this
    opts.gain = None
    opts.apply_row_dark_subtraction = False
    opts.apply_row_dark_use_mean = False
    opts.optimized_mean = 0.0
    out = []
    t0 = time.perf_counter()
    for k in range(n):
        idx = np.asarray(simage.electron_count_frame(frames[k], options=opts).data[0, 0], dtype=np.int64)
        row, col = np.divmod(idx, W)
        out.append((col + 0.5, row + 0.5))
    info = {"source": "stempy", "function": "stempy.image.electron_count_frame",
            "stempy_version": version("stempy"), "background_threshold_adu": opts.background_threshold,
            "dark_adu": dark, "count_s": time.perf_counter() - t0}
    return out, info


def match_frame(fx, fy, tx, ty, radius):
    """Greedy one-to-one matching by increasing distance; returns the matched distances."""
    if len(fx) == 0 or len(tx) == 0:
        return np.empty(0)
    cell = max(radius, 1e-9)
    tcx = np.floor(tx / cell).astype(np.int64)
    tcy = np.floor(ty / cell).astype(np.int64)
    ncx = int(tcx.max() - tcx.min()) + 3  # room for the neighbour offsets
    base_x = tcx.min() - 1
    base_y = tcy.min() - 1
    tkey = (tcy - base_y) * ncx + (tcx - base_x)
    order = np.argsort(tkey, kind="stable")
    skey = tkey[order]
    fcx = np.floor(fx / cell).astype(np.int64) - base_x
    fcy = np.floor(fy / cell).astype(np.int64) - base_y
    fi_all, ti_all = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cx, cy = fcx + dx, fcy + dy
            ok = (cx >= 0) & (cx < ncx) & (cy >= 0)
            key = np.where(ok, cy * ncx + cx, -1)
            lo = np.searchsorted(skey, key, "left")
            hi = np.searchsorted(skey, key, "right")
            cnt = np.where(ok, hi - lo, 0)
            if cnt.sum() == 0:
                continue
            fi = np.repeat(np.arange(len(fx)), cnt)
            start = np.repeat(lo - np.cumsum(cnt) + cnt, cnt)
            ti = order[start + np.arange(cnt.sum())]
            fi_all.append(fi)
            ti_all.append(ti)
    if not fi_all:
        return np.empty(0)
    fi = np.concatenate(fi_all)
    ti = np.concatenate(ti_all)
    d = np.hypot(fx[fi] - tx[ti], fy[fi] - ty[ti])
    keep = d <= radius
    fi, ti, d = fi[keep], ti[keep], d[keep]
    srt = np.lexsort((ti, fi, d))
    used_f = np.zeros(len(fx), bool)
    used_t = np.zeros(len(tx), bool)
    dist = []
    for a, b, e in zip(fi[srt].tolist(), ti[srt].tolist(), d[srt].tolist()):
        if not used_f[a] and not used_t[b]:
            used_f[a] = used_t[b] = True
            dist.append(e)
    return np.asarray(dist)


def score(found, truth, radius):
    dists = [match_frame(f[0], f[1], t[0], t[1], radius) for f, t in zip(found, truth)]
    d = np.concatenate(dists) if dists else np.empty(0)
    n_true = sum(len(t[0]) for t in truth)
    n_found = sum(len(f[0]) for f in found)
    m = len(d)
    return {"true": n_true, "found": n_found, "matched": m,
            "recall": m / n_true if n_true else float("nan"),
            "precision": m / n_found if n_found else float("nan"),
            "mean_err_px": float(d.mean()) if m else float("nan"),
            "median_err_px": float(np.median(d)) if m else float("nan")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("frames_file", help="emsim frames HDF5 file (with /truth)")
    ap.add_argument("--emsim", nargs="*", default=[], metavar="COUNTS.h5",
                    help="emsim count --out files made from FRAMES.h5")
    ap.add_argument("--stempy", action="store_true", help="also run and score stempy's electron_count_frame")
    ap.add_argument("--radius-px", type=float, default=1.5, help="match radius, pixels (default 1.5)")
    ap.add_argument("--n-sigma", type=float, default=4.0,
                    help="stempy background threshold in noise sigmas (default 4)")
    ap.add_argument("--frames", type=int, default=0, help="score only the first N frames (0 = all)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args()
    if a.radius_px <= 0 or a.frames < 0:
        sys.exit("error: --radius-px must be > 0 and --frames >= 0")
    if not a.emsim and not a.stempy:
        sys.exit("error: nothing to score; give --emsim files and/or --stempy")

    t0 = time.perf_counter()
    n, truth, meta = load_truth(a.frames_file, a.frames)
    if n == 0:
        sys.exit("error: no frames")
    counters = []
    for path in a.emsim:
        found, info = load_emsim(path, n, meta)
        name = os.path.splitext(os.path.basename(path))[0]
        counters.append((name, found, info))
    if a.stempy:
        found, info = run_stempy(a.frames_file, n, meta, a.n_sigma)
        counters.append(("stempy", found, info))

    rows = []
    for name, found, info in counters:
        t1 = time.perf_counter()
        r = {"name": name, **info, **score(found, truth, a.radius_px)}
        r["score_s"] = time.perf_counter() - t1
        rows.append(r)
    n_true = sum(len(t[0]) for t in truth)
    total_s = time.perf_counter() - t0

    if a.json:
        print(json.dumps({"frames_file": a.frames_file, "frames": n, "height": meta["height"],
                          "width": meta["width"], "radius_px": a.radius_px, "matching": "greedy",
                          "true_electrons": n_true, "total_s": total_s, "counters": rows}))
        return
    print(f"{a.frames_file}: {n} frames {meta['height']}x{meta['width']}, {n_true} true electrons "
          f"({n_true / n:.1f}/frame), greedy matching within {a.radius_px} px")
    head = ("counter", "found", "matched", "recall", "precision", "mean px", "median px")
    w0 = max(len(head[0]), *(len(r["name"]) for r in rows))
    print(f"{head[0]:<{w0}}  " + "  ".join(f"{h:>9}" for h in head[1:]))
    for r in rows:
        print(f"{r['name']:<{w0}}  {r['found']:>9}  {r['matched']:>9}  {r['recall']:>9.4f}  "
              f"{r['precision']:>9.4f}  {r['mean_err_px']:>9.4f}  {r['median_err_px']:>9.4f}")
    print(f"({total_s:.1f} s)")


if __name__ == "__main__":
    main()
