#!/usr/bin/env python3
"""Checks that an emsim model file means what PyTorch would make of it: loads the safetensors with
numpy, runs the forward pass with PyTorch's conventions (NCHW, OIHW cross-correlation, BatchNorm2d in
eval mode, MaxPool2d floor mode, Flatten in C order, Linear x @ W.T + b) and compares the outputs with
`emsim infer --logits` on the same crops.

    pip install numpy safetensors
    python3 scripts/checks/model_numpy.py --emsim target/release/emsim --model assets/models/fast.safetensors

No PyTorch needed: the numpy forward pass is written from PyTorch's documented definitions.
"""
import argparse, json, os, subprocess, sys, tempfile
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def conv2d(x, w, b, pad, stride):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, oh, ow), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    return y + b[None, :, None, None]


def maxpool(x, k, s):
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    y = np.full((n, c, oh, ow), -np.inf)
    for ky in range(k):
        for kx in range(k):
            y = np.maximum(y, x[:, :, ky:ky + s * oh:s, kx:kx + s * ow:s])
    return y


def forward(cfg, t, x):
    for i, l in enumerate(cfg["layers"]):
        kind = l["type"]
        if kind == "conv2d":
            x = conv2d(x, t[f"{i}.weight"], t[f"{i}.bias"], l.get("padding", 0), l.get("stride", 1))
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "batch_norm2d":
            g, b, m, v = (t[f"{i}.{k}"][None, :, None, None] for k in ("weight", "bias", "running_mean", "running_var"))
            x = (x - m) / np.sqrt(v + l.get("eps", 1e-5)) * g + b
        elif kind == "max_pool2d":
            x = maxpool(x, l["kernel"], l.get("stride") or l["kernel"])
        elif kind == "dropout":
            pass
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "linear":
            x = x @ t[f"{i}.weight"].T.astype(np.float64) + t[f"{i}.bias"]
        else:
            raise SystemExit(f"unknown layer {kind}")
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emsim", default="target/release/emsim")
    ap.add_argument("--model", default="assets/models/fast.safetensors")
    ap.add_argument("--n", type=int, default=64)
    a = ap.parse_args()
    with safe_open(a.model, "np") as f:
        cfg = json.loads(f.metadata()["emsim_config"])
    t = {k: v.astype(np.float64) for k, v in load_file(a.model).items()}
    s = cfg["input_px"]
    rng = np.random.default_rng(1)
    crops = rng.normal(0, 20, (a.n, s, s)).astype(np.float32)
    crops[:, s // 2, s // 2] += rng.uniform(100, 600, a.n).astype(np.float32)  # a bright centre
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "c.npy"), crops)
        subprocess.run([a.emsim, "infer", "--model", a.model, "--input", os.path.join(d, "c.npy"),
                        "--out", os.path.join(d, "e.npy"), "--logits", os.path.join(d, "l.npy")], check=True)
        got = np.load(os.path.join(d, "l.npy"))
    want = forward(cfg, t, (crops * cfg["input_scale"]).astype(np.float64)[:, None])
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    print(f"{cfg['name']}: {a.n} crops, outputs {want.shape[1]}, max |emsim - numpy| / max|output| = {err:.2e}")
    sys.exit(0 if err < 1e-4 else 1)


if __name__ == "__main__":
    main()
