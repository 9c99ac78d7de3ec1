#!/usr/bin/env python3
"""Check that stempy reads an electron-counted HDF5 file (e.g. `emsim count --stempy out.h5`).

    python scripts/baselines/check_stempy_read.py PATH [--frame-shape H W] [--frames F]
    python scripts/baselines/check_stempy_read.py --selftest

Loads PATH with `stempy.io.load_electron_counts(PATH)` (stempy 3.6.0; it is
`SparseArray.from_hdf5(PATH, keep_flyback=True)`), then does what a stempy user does next: takes the
dense frame `sa[0, 0]` (this is where unsigned scan_positions Nx/Ny attributes fail with IndexError)
and sums all frames. Prints one JSON line with the shape, the number of frames and the electrons in
frame 0, and exits 1 on any failure or mismatch.

Checks beyond "it loads" (each failure is named on stderr):
  * root attr `version` == 3 (stempy accepts 1/2 too but then converts from an older layout);
  * the shape is 4-D (scan_y, scan_x, H, W) and, for an emsim frame stack, scan_y == 1;
  * the frame shape matches `--frame-shape H W`, or the root attrs `height`/`width` when the file
    has them (emsim-counts/1). stempy takes frame_shape = (frames.attrs["Nx"], frames.attrs["Ny"])
    as the numpy shape, i.e. Nx = number of ROWS (H) and Ny = number of columns (W), because its own
    writer stores Nx = frame_shape[0]; with Nx = W, Ny = H a non-square file loads transposed;
  * every flat index is < H * W, and sa[0, 0] sums to the number of indices in frame 0;
  * `--frames F`: the number of frames.
`--selftest` writes a good file and three broken variants (write_fixture) and checks the verdicts.
"""
import argparse
import json
import sys
import warnings

import h5py
import numpy as np



def check(path, frame_shape=None, frames=None):
    """Returns (record, problems); raises if stempy cannot read the file at all."""
    import stempy.io as sio

    warnings.simplefilter("ignore", DeprecationWarning)
    problems = []
    sa = sio.load_electron_counts(path)
    shape = tuple(int(s) for s in sa.shape)
    scan_shape = tuple(int(s) for s in sa.scan_shape)
    fshape = tuple(int(s) for s in sa.frame_shape)
    n_frames = int(np.prod(scan_shape)) * int(sa.num_frames_per_scan)
    e0 = len(sa.data[0, 0])
    dense0 = np.asarray(sa[0, 0])  # fails for unsigned scan_positions attrs
    total = np.asarray(sa.sum(axis=tuple(range(len(scan_shape)))))

    with h5py.File(path, "r") as f:
        version = f.attrs.get("version", None)
        expect = tuple(frame_shape) if frame_shape else None
        if expect is None and "height" in f.attrs and "width" in f.attrs:
            expect = (int(f.attrs["height"]), int(f.attrs["width"]))
        fr = f["electron_events/frames"]
        sp = f["electron_events/scan_positions"]
        attrs = {
            "frames.Nx": [int(fr.attrs["Nx"]), str(fr.attrs["Nx"].dtype)],
            "frames.Ny": [int(fr.attrs["Ny"]), str(fr.attrs["Ny"].dtype)],
            "frames.dtype": "vlen " + str(h5py.check_vlen_dtype(fr.dtype) or fr.dtype),
            "scan_positions.Nx": [int(sp.attrs["Nx"]), str(sp.attrs["Nx"].dtype)],
            "scan_positions.Ny": [int(sp.attrs["Ny"]), str(sp.attrs["Ny"].dtype)],
            "scan_positions.dtype": str(sp.dtype),
        }

    if version is None or int(version) != 3:
        problems.append(f"root attr version is {version!r}, expected 3")
    if len(shape) != 4:
        problems.append(f"shape {shape} is not 4-D (scan_y, scan_x, H, W)")
    elif scan_shape[0] != 1:
        problems.append(f"scan shape {scan_shape}: an emsim frame stack should be (1, F) "
                        "(scan_positions attrs Nx = F, Ny = 1)")
    if expect is not None and fshape != expect:
        problems.append(f"frame shape {fshape} != expected (H, W) = {expect}: stempy reads "
                        "frames attrs as Nx = H (rows), Ny = W (columns)")
    if frames is not None and n_frames != frames:
        problems.append(f"{n_frames} frames, expected {frames}")
    H, W = fshape
    bad = [k for k, row in enumerate(sa.data.ravel()) if len(row) and int(np.max(row)) >= H * W]
    if bad:
        problems.append(f"{len(bad)} frames hold flat indices >= H*W (first: frame {bad[0]})")
    if int(dense0.sum()) != e0:
        problems.append(f"sa[0, 0] sums to {int(dense0.sum())}, frame 0 lists {e0} indices")
    rec = {"path": path, "ok": not problems, "shape": list(shape), "scan_shape": list(scan_shape),
           "frame_shape": list(fshape), "frames": n_frames, "electrons_frame0": e0,
           "electrons_total": int(total.sum()), "version": None if version is None else int(version),
           "attrs": attrs}
    return rec, problems


def write_fixture(path, H=4, W=6, F=3, nx="H", scan_attr_dtype=np.int64, version=3):
    """The layout stempy 3.6 reads (mirrors SparseArray.write_to_hdf5), with knobs to break it."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        if version is not None:
            f.attrs["version"] = np.int64(version)
        g = f.create_group("electron_events")
        d = g.create_dataset("frames", (F,), dtype=h5py.vlen_dtype(np.uint32))
        for k in range(F):
            d[k] = np.flatnonzero(rng.random(H * W) < 0.3).astype(np.uint32)  # row * W + col
        d.attrs["Nx"], d.attrs["Ny"] = (np.int64(H), np.int64(W)) if nx == "H" else (np.int64(W), np.int64(H))
        s = g.create_dataset("scan_positions", data=np.arange(F, dtype=np.uint32))
        s.attrs.create("Nx", F, dtype=scan_attr_dtype)
        s.attrs.create("Ny", 1, dtype=scan_attr_dtype)


def selftest():
    import os
    import tempfile

    cases = [("good", {}, True), ("Nx=W,Ny=H (transposed)", {"nx": "W"}, False),
             ("scan_positions attrs uint32", {"scan_attr_dtype": np.uint32}, False),
             ("no version attr", {"version": None}, False)]
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        for name, kw, want_ok in cases:
            p = os.path.join(d, "t.h5")
            write_fixture(p, **kw)
            try:
                rec, problems = check(p, frame_shape=(4, 6), frames=3)
                ok, why = not problems, "; ".join(problems)
            except Exception as e:  # noqa: BLE001
                ok, why = False, f"{type(e).__name__}: {e}"
            failed += ok != want_ok
            print(f"{'PASS' if ok == want_ok else 'FAIL'}  {name}: read ok={ok} {why}")
    return 1 if failed else 0


ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("path", nargs="?")
ap.add_argument("--frame-shape", type=int, nargs=2, metavar=("H", "W"), default=None)
ap.add_argument("--frames", type=int, default=None, help="expected number of frames")
ap.add_argument("--selftest", action="store_true",
                help="write tiny good/bad files to a temp dir and check the verdicts")
a = ap.parse_args()
if a.selftest:
    sys.exit(selftest())
if not a.path:
    ap.error("PATH is required (or --selftest)")
try:
    rec, problems = check(a.path, a.frame_shape, a.frames)
except Exception as e:  # noqa: BLE001 - any failure to read is the answer
    print(f"error: stempy could not read {a.path}: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(rec), flush=True)
for p in problems:
    print(f"error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
