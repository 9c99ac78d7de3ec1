"""Throughput of the Python package on default frames (docs/python.md, "Speed"):

    python scripts/python-bench.py

prints frames/s of Generator.generate(32) (into a fresh array, and into one array reused) and
of count() on those frames, with the noise sigma
given and estimated (the median of 5 calls each, after one warm-up call)."""

import json
import time

import emsim


def rate(call, n=32, repeats=5):
    call()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        ts.append(time.perf_counter() - t0)
    return round(n / sorted(ts)[repeats // 2], 1)


gen = emsim.Generator(seed=1, device="cpu")
frames, truth = gen.generate(32)
buf = frames.copy()
print(json.dumps({
    "generate_u16_frames_per_s": rate(lambda: gen.generate(32)),
    "generate_u16_into_frames_per_s": rate(lambda: gen.generate(32, out=buf)),
    "generate_u16_into_no_truth_frames_per_s": rate(lambda: gen.generate(32, out=buf, truth=False)),
    "count_sigma_given_frames_per_s": rate(lambda: emsim.count(frames, offset_adu=gen.offset_adu, sigma_e=20.0)),
    "count_sigma_estimated_frames_per_s": rate(lambda: emsim.count(frames, offset_adu=gen.offset_adu)),
}))
