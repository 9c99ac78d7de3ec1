"""The Python package against the command line: the same seed gives the same frames, truth and
counts, byte for byte; bad arguments raise the command's one-line errors. Run by scripts/test.sh
in a fresh virtual environment (docs/python.md)."""

import json
import os
import subprocess
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

import emsim

REPO = Path(__file__).resolve().parents[2]
EMSIM = os.environ.get("EMSIM") or str(REPO / "target" / "debug" / "emsim")


def cli(*args, cwd):
    r = subprocess.run([EMSIM, *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small dataset made by the command line, and the same made from Python."""
    d = tmp_path_factory.mktemp("run")
    args = ["--frames", "6", "--size", "64x80", "--electrons", "40", "--electrons-sd", "5", "--seed", "3"]
    cli("frames", *args, "--device", "cpu", "-q", "--out", "f.h5", cwd=d)
    gen = emsim.Generator(size=(64, 80), electrons=40, electrons_sd=5, seed=3, device="cpu")
    frames, truth = gen.generate(6)
    return d, gen, frames, truth


def test_frames_and_truth_equal_the_command_line(run):
    d, gen, frames, truth = run
    with h5py.File(d / "f.h5") as f:
        want = f["frames"][:]
        assert frames.dtype == want.dtype == np.uint16
        assert frames.shape == want.shape == (6, 64, 80)
        assert frames.tobytes() == want.tobytes()
        for k in ["frame", "x_px", "y_px", "event", "deposit_kev", "offsets"]:
            w = f["truth/" + k][:]
            assert truth[k].dtype == w.dtype, k
            assert truth[k].tobytes() == w.tobytes(), k
        assert gen.offset_adu == f["frames"].attrs["offset_adu"]
    # any start, any batch: frames 2..5 are the same frames
    part, t2 = gen.generate(3, start=2)
    assert part.tobytes() == frames[2:5].tobytes()
    assert list(t2["offsets"]) == list(truth["offsets"][2:6] - truth["offsets"][2])
    batches = list(emsim.frame_batches(gen, 6, batch=4))
    assert np.concatenate([b[0] for b in batches]).tobytes() == frames.tobytes()
    # into an array the caller keeps
    buf = np.full((6, 64, 80), 7, np.uint16)
    got, t3 = gen.generate(6, out=buf)
    assert got is buf and buf.tobytes() == frames.tobytes()
    assert t3["x_px"].tobytes() == truth["x_px"].tobytes()
    buf[:] = 0
    got, none = gen.generate(6, out=buf, truth=False)
    assert none is None and buf.tobytes() == frames.tobytes()
    for wrong in [np.zeros((5, 64, 80), np.uint16), np.zeros((6, 64, 80), np.float32), np.zeros((6, 80, 64), np.uint16).T]:
        with pytest.raises(ValueError, match="out"):
            gen.generate(6, out=wrong)


def test_count_and_evaluate_equal_the_command_line(run):
    d, gen, frames, truth = run
    found = emsim.count(frames, offset_adu=gen.offset_adu)
    cli("count", "f.h5", "--out", "c.h5", "--device", "cpu", "-q", cwd=d)
    with h5py.File(d / "c.h5") as c:
        for k in ["frame", "x_px", "y_px", "row", "col", "charge_e", "offsets"]:
            w = c["electrons/" + k][:]
            assert found[k].dtype == w.dtype, k
            assert found[k].tobytes() == w.tobytes(), k
    report = json.loads(cli("eval", "c.h5", "--truth", "f.h5", "--json", "-", cwd=d))
    mine = emsim.evaluate(found, truth)
    theirs = report["methods"][0]
    for k in ["n_true", "n_found", "n_matched", "recall", "precision", "mean_error_px", "p95_error_px", "crowding"]:
        assert mine[k] == theirs[k], k
    assert len(mine["crowding"]) == 5 and sum(b["n_true"] for b in mine["crowding"]) == mine["n_true"]
    assert mine["recall"] > 0.5
    # f32 frames count the same as their u16 values
    same = emsim.count(frames.astype(np.float32), offset_adu=gen.offset_adu)
    assert same["x_px"].tobytes() == found["x_px"].tobytes()
    st = emsim.count(frames, method="stempy", offset_adu=gen.offset_adu)
    assert 0 < len(st["x_px"]) and np.all(st["x_px"] % 1 == 0.5)


def test_network_equals_the_command_line(run):
    d, gen, frames, truth = run
    model = emsim.Model.load()  # the default network of counting
    assert model.name == "tiny" and model.input_px > 0
    found = emsim.count(frames, method="net", offset_adu=gen.offset_adu)
    cli("count", "f.h5", "--method", "net", "--out", "n.h5", "--device", "cpu", "-q", cwd=d)
    with h5py.File(d / "n.h5") as c:
        for k in ["frame", "x_px", "y_px", "sigma_px", "offsets"]:
            assert found[k].tobytes() == c["electrons/" + k][:].tobytes(), k
    # crops around the first electrons, in electrons, as `emsim infer` takes them
    s = model.input_px
    img = frames.astype(np.float32) - gen.offset_adu
    crops = np.stack([img[0, r:r + s, c:c + s] for r, c in [(0, 0), (10, 20), (30, 40)]]).astype(np.float32)
    np.save(d / "crops.npy", crops)
    cli("infer", "--model", emsim.default_model_path(), "--input", "crops.npy", "--out", "est.npy", cwd=d)
    est = model.infer(crops)
    assert est.shape == (3, 4)
    assert est.tobytes() == np.load(d / "est.npy").tobytes()
    with pytest.raises(ValueError, match="takes"):
        model.infer(np.zeros((1, s + 1, s + 1), np.float32))
    with pytest.raises(ValueError, match="model"):
        emsim.count(frames, method="c3x3t", model=model)


def test_stempy_method_equals_stempy_itself(run):
    """`count(method="stempy")` against stempy 3.6's own counter on the same frames, event for
    event (scripts/python-test.sh installs stempy where a wheel exists for this Python)."""
    si = pytest.importorskip("stempy.image")
    _, gen, frames, _ = run
    h, w = frames.shape[1:]
    mine = emsim.count(frames, method="stempy", offset_adu=gen.offset_adu, sigma_e=20.0)
    dark = np.full((h, w), gen.offset_adu, np.float32)
    for k, f in enumerate(frames):
        s = si.electron_count_frame(f, darkreference=dark, background_threshold=80.0,
                                    xray_threshold=65536.0 - gen.offset_adu)
        theirs = np.sort(np.asarray(s.data[0, 0], dtype=np.int64))
        rows = slice(mine["offsets"][k], mine["offsets"][k + 1])
        flat = np.sort(mine["row"][rows].astype(np.int64) * w + mine["col"][rows])
        assert len(theirs) > 0
        assert np.array_equal(flat, theirs), f"frame {k}"


def test_events_equal_the_command_line(tmp_path):
    cli("events", "--preset", "seed", "--energy-kev", "200", "--count", "300", "--seed", "9", "--out", "lib.h5",
        cwd=tmp_path)
    lib = emsim.events(preset="seed", energy_kev=200, count=300, seed=9)
    assert lib.n_events == 300
    lib.save(str(tmp_path / "mine.h5"))
    with h5py.File(tmp_path / "lib.h5") as a, h5py.File(tmp_path / "mine.h5") as b:
        names = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        assert names
        for n in names:
            assert a[n][()].tobytes() == b[n][()].tobytes(), n
    # frames from the library made in Python, as from its file
    g1 = emsim.Generator(lib, size=(32, 32), electrons=5, seed=1)
    g2 = emsim.Generator(emsim.Library.load(str(tmp_path / "lib.h5")), size=(32, 32), electrons=5, seed=1)
    assert g1.generate(2)[0].tobytes() == g2.generate(2)[0].tobytes()
    with pytest.raises(ValueError, match="preset"):
        emsim.events(preset="no-such-sensor", count=10)


def test_threads_get_the_same_frames(run):
    _, gen, frames, _ = run
    out = [None] * 4

    def work(i):
        out[i] = gen.generate(6)[0]

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(o.tobytes() == frames.tobytes() for o in out)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: emsim.count(np.zeros((2, 8, 8), np.float64)), ValueError, ["frames", "float32 or uint16"]),
        (lambda: emsim.count(np.zeros((8, 8), np.float32)), ValueError, ["frames", "3-D"]),
        (lambda: emsim.count([[1, 2], [3, 4]]), ValueError, ["frames", "numpy"]),
        (lambda: emsim.count(np.zeros((1, 8, 8), np.float32), method="c9x9"), ValueError, ["--method", "c9x9"]),
        (lambda: emsim.count(np.zeros((1, 8, 8), np.float32), finder="blob"), ValueError, ["--finder"]),
        (lambda: emsim.count(np.ones((1, 8, 8), np.float32)), ValueError, ["sigma_e", "read noise"]),
        (lambda: emsim.Generator(size=(-4, 8)), ValueError, ["size", "positive"]),
        (lambda: emsim.Generator(size=(8, 8), dtype="f64"), ValueError, ["dtype"]),
        (lambda: emsim.Generator(size=(8, 8), device="tpu"), ValueError, ["device", "tpu"]),
        (lambda: emsim.count(np.zeros((1, 8, 8), np.float32), sigma_e=1.0, device="tpu"), ValueError, ["device", "tpu"]),
        (lambda: emsim.events(count=10, device="tpu"), ValueError, ["device", "tpu"]),
        (lambda: emsim.Generator(size=(8, 8)).generate(0), ValueError, ["n = 0"]),
        (lambda: emsim.Library.load("/no/such/library.h5"), OSError, ["/no/such/library.h5", "not found"]),
        (lambda: emsim.evaluate({"x_px": np.zeros(1, np.float32)}, {}), ValueError, ["offsets"]),
    ],
)
def test_bad_arguments_raise_one_line_errors(call, exc, words):
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_torch_dataset_streams_deterministic_batches():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    class Frames(IterableDataset):
        """Frames made on the fly: worker w of W makes batches w, w + W, ... of the dataset."""

        def __init__(self, n_batches, batch, seed):
            self.n_batches, self.batch, self.seed = n_batches, batch, seed

        def __iter__(self):
            info = get_worker_info()
            w, n_workers = (info.id, info.num_workers) if info else (0, 1)
            gen = emsim.Generator(size=(32, 32), electrons=10, seed=self.seed)
            for b in range(w, self.n_batches, n_workers):
                frames, truth = gen.generate(self.batch, start=b * self.batch)
                yield b, torch.from_numpy(frames.astype(np.float32))

    a = {b: x for b, x in DataLoader(Frames(6, 2, seed=4), batch_size=None, num_workers=2)}
    b = {b: x for b, x in DataLoader(Frames(6, 2, seed=4), batch_size=None, num_workers=0)}
    assert sorted(a) == sorted(b) == list(range(6))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_merged_shards_open_in_h5py_as_one_dataset(tmp_path):
    """`emsim merge` (docs/formats.md): plain h5py sees one /frames of the full shape, the same as
    the single-machine file, virtual by default and copied with --copy."""
    args = ["--frames", "8", "--size", "40x48", "--electrons", "20", "--seed", "2", "--device", "cpu", "-q"]
    cli("frames", *args, "--out", "one.h5", cwd=tmp_path)
    for k in range(4):
        cli("frames", *args, "--shard", f"{k}/4", "--out", f"s{k}.h5", cwd=tmp_path)
    shards = [f"s{k}.h5" for k in range(4)]
    cli("merge", *shards, "--out", "all.h5", "-q", cwd=tmp_path)
    cli("merge", *shards, "--out", "copy.h5", "--copy", "-q", cwd=tmp_path)
    with h5py.File(tmp_path / "one.h5") as one:
        for name, virtual in [("all.h5", True), ("copy.h5", False)]:
            with h5py.File(tmp_path / name) as m:
                assert m["frames"].shape == (8, 40, 48)
                assert m["frames"].is_virtual == virtual
                assert np.array_equal(m["frames"][:], one["frames"][:])
                for k in ["frame", "x_px", "y_px", "event", "deposit_kev", "offsets"]:
                    assert np.array_equal(m["truth/" + k][:], one["truth/" + k][:]), k
