"""emsim from Python: the same engine as the `emsim` command, numpy arrays in and out.

Make frames with their ground truth, count the electrons in them, score the result::

    import emsim
    gen = emsim.Generator(seed=1)                 # default frames: 576x576, ~2927 e-/frame, 20 e- noise
    frames, truth = gen.generate(8)               # (8, 576, 576) uint16 ADU, truth: dict of arrays
    found = emsim.count(frames, offset_adu=gen.offset_adu)
    print(emsim.evaluate(found, truth)["recall"])

The same seed gives exactly the frames `emsim frames --seed 1` writes. Calls release the GIL, so
threads (and PyTorch data-loader workers) run in parallel. Errors are the command's one-line
messages, raised as ValueError (a bad argument), OSError (a file) or RuntimeError.
See docs/python.md.
"""

from ._emsim import (  # noqa: F401
    Generator,
    Library,
    Model,
    __version__,
    count,
    default_library_path,
    default_model_path,
    evaluate,
    events,
)

__all__ = [
    "Generator",
    "Library",
    "Model",
    "count",
    "evaluate",
    "events",
    "default_library_path",
    "default_model_path",
    "frame_batches",
    "__version__",
]


def frame_batches(generator, n, batch=16, start=0):
    """Frames `start .. start + n` of `generator`'s dataset, `batch` frames at a time.

    Yields `(frames, truth)` pairs as `Generator.generate` returns them, with truth frame indices
    counted from the batch's first frame.
    """
    end = start + n
    while start < end:
        k = min(batch, end - start)
        yield generator.generate(k, start)
        start += k
