"""Faults a long benchmark meets (issue 32), each compared with a clean run of a tiny preset: a corrupt
cell, a full disk (a small tmpfs where one can be mounted, a file size limit always), Ctrl-C / SIGTERM,
lost write access and a removed results directory mid-sweep, a damaged checkpoint and patch, and
malicious pickles for every reader of pickled user files. Each fault ends in one line with the right
exit code and leaves whole files only; a rerun gives the clean run's cells and table."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import resource
import select
import shlex
import shutil
import signal
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import CliResult, run_cli, tiny_preset, write_cifar, write_cifar100, write_idx
from patchbench.errors import PatchbenchError
from patchbench.store.results import ResultStore

VOLATILE = ["created", "seconds"]  # when and how long: the only columns a rerun may change
RESUME = "rerun the same command: finished cells, models, patches and training epochs are kept"


@pytest.fixture(scope="module")
def preset(tmp_path_factory, one_torch_thread):
    """The tiniest patch-defense preset: synthetic 16 px images (256 to train on, 64 to evaluate), one
    epoch, one 4 px LaVAN patch of 2 steps, LGS at one λ: four cells."""
    root = tmp_path_factory.mktemp("faults")
    write_idx(root / "data", "train", 256)
    write_idx(root / "data", "test", 64, seed=1)
    path = tiny_preset(root / "faults-tiny.yaml", name="faults-tiny")
    raw = yaml.safe_load(path.read_text())
    raw["data"].update(root=str(root / "data"), image_size=16, eval_n=64, batch_size=64, ssim_n=0)
    raw["model"]["train"].update(train_n=256, batch_size=128, epochs=1)
    raw["attacks"][0].update(sizes=[4], steps=2, train_pool=64, success_n=32)
    raw["defenses"][0]["lambdas"] = [2.3]
    raw["audit"] = {"n": 8, "probes": 2}
    path.write_text(yaml.safe_dump(raw))
    return path


def sweep(preset, results, check=True):
    return run_cli("sweep", "--preset", preset, "--results", results, "--no-progress", check=check)


def table(results) -> str:
    return run_cli("table", "icaart2022-1", "--preset", "faults-tiny", "--results", results, "--format", "markdown").stdout


def stored(results: Path) -> pd.DataFrame:
    df = pd.concat([pd.read_parquet(f) for f in sorted((results / "cells").glob("*.parquet"))], ignore_index=True)
    return df.drop(columns=VOLATILE).sort_values("run_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def clean(preset, tmp_path_factory):
    """The clean run: its results directory, cells and table."""
    results = tmp_path_factory.mktemp("clean") / "results"
    sweep(preset, results)
    return results, stored(results), table(results)


def same_as_clean(results, clean):
    _, cells, text = clean
    pd.testing.assert_frame_equal(stored(results), cells)
    assert table(results) == text


def one_line(r, code: int, prefix: str, *words) -> str:
    """The fault's one line (the last on stderr), with its exit code, no traceback; returns it."""
    assert r.returncode == code, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert [ln for ln in lines if ln.startswith(("error:", "aborted:"))] == lines[-1:], r.stderr[-2000:]
    assert lines[-1].startswith(prefix), lines[-1]
    for w in words:
        assert w in lines[-1], (w, lines[-1])
    return lines[-1]


def whole_files(results: Path) -> None:
    """Nothing half-written under a final name: no temp file left, every cell and prediction opens."""
    assert not [p for p in results.rglob(".*.tmp*")]
    for f in [*results.glob("cells/*.parquet"), *results.glob("predictions/*.parquet")]:
        pd.read_parquet(f)


def with_artifacts(clean, dst: Path) -> Path:
    """A results directory holding the clean run's model and patch, no cells."""
    shutil.copytree(clean[0] / "artifacts", dst / "artifacts")
    return dst


def cleared(line: str) -> None:
    """Run the command a refusal names (`rm '...' ...`)."""
    cmd = re.search(r"`(rm [^`]+)`", line).group(1)
    subprocess.run(shlex.split(cmd), check=True)


@contextmanager
def tmpfs(path: Path, size: str, instead: str = "test_full_disk_by_file_size_limit covers a full disk"):
    """A tmpfs of ``size`` mounted at ``path``, or the test skipped where none can be mounted (``instead``:
    what still covers the case then)."""
    path.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True) if shutil.which("mount") else None
    if r is None or r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(r.stderr.strip() if r else 'no mount command') or 'not permitted'}; "
                    f"needs root / CAP_SYS_ADMIN): {instead}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ---- a corrupt cell -------------------------------------------------------------------------------


def test_corrupt_cells_are_recomputed_and_tables_still_read(preset, clean, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(clean[0], results)
    # two clean cells damaged, an attacked one's predictions: the table keeps something to show
    cells = sorted((results / "cells").glob("*.parquet"), key=lambda f: pd.read_parquet(f)["condition"].iloc[0] != "clean")
    truncated = cells[0].read_bytes()
    cells[0].write_bytes(truncated[: len(truncated) // 2])  # a truncated parquet
    pd.DataFrame({"run_id": [cells[1].stem]}).to_parquet(cells[1])  # opens, but lacks the declared columns
    pred = results / "predictions" / cells[2].name
    pred.write_bytes(pred.read_bytes()[:100])  # the cell whole, its predictions truncated

    r = run_cli("table", "icaart2022-1", "--preset", "faults-tiny", "--results", results, "--format", "markdown")
    assert "Traceback" not in r.stderr and "ICAART 2022 Table 1" in r.stdout
    assert f"cell {cells[0]} does not open as parquet" in r.stderr and "left out" in r.stderr
    assert f"cell {cells[1]} lacks the column(s) dataset" in r.stderr

    r = sweep(preset, results)
    said = [ln for ln in r.stderr.splitlines() if "set aside" in ln]
    assert len(said) == 3 and all("computed again" in ln for ln in said), r.stderr
    assert (results / "cells" / f"{cells[0].name}.corrupt").read_bytes() == truncated[: len(truncated) // 2]
    assert (results / "predictions" / f"{cells[2].name}.corrupt").is_file()
    same_as_clean(results, clean)


# ---- a full disk ----------------------------------------------------------------------------------


def test_full_disk_during_training_on_a_small_tmpfs(preset, clean, tmp_path):
    """256 KiB hold no per-epoch checkpoint (weights + Adam's moments): the disk fills while training."""
    with tmpfs(tmp_path / "disk", "256k") as disk:
        results = disk / "results"
        r = sweep(preset, results, check=False)
        one_line(r, 2, "error: no space left on device writing", str(results / "artifacts" / "models"), RESUME)
        whole_files(results)
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # space freed
        sweep(preset, results)
        same_as_clean(results, clean)


def _limited_child(limit: int, *args, timeout: float = 300.0):
    """``patchbench ARGS`` in a forked child whose files stop at ``limit`` bytes (RLIMIT_FSIZE, with SIGXFSZ
    ignored so that write() fails with EFBIG instead of killing it): the limit never touches this process,
    and the fork saves the child a new interpreter and torch import (most of a subprocess's seconds). Torch
    runs one thread here (the module's fixture), so the child starts no OpenMP team after the fork."""
    assert torch.get_num_threads() == 1
    r, w = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns of fork() in a threaded process; see the docstring
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: runs the CLI, reports through the pipe, never returns into pytest
        code = 70
        try:
            os.close(r)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            res = run_cli(*args, check=False)
            with os.fdopen(w, "w") as out:
                json.dump([res.returncode, res.stdout, res.stderr], out)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as fh:
        ready, _, _ = select.select([fh], [], [], timeout)
        if not ready:  # a hung child fails the test instead of the suite
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child did not finish in {timeout:.0f} s")
        text = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and text, f"the child failed ({status})"
    return CliResult(*json.loads(text))


def test_full_disk_by_file_size_limit(preset, clean, tmp_path):
    """Runs everywhere (no mount, no root): a child limited to 16 KiB files fails on its first cell (~30 KB)."""
    results = with_artifacts(clean, tmp_path / "results")
    r = _limited_child(16 * 1024, "sweep", "--preset", preset, "--results", results, "--no-progress")
    one_line(r, 2, "error: file size limit reached writing", str(results / "cells"), RESUME)
    whole_files(results)
    assert not list((results / "cells").glob("*.parquet"))
    sweep(preset, results)
    same_as_clean(results, clean)


# ---- interrupted or broken mid-sweep ----------------------------------------------------------------


def _after_first_cell(monkeypatch, fault) -> None:
    """``fault(store)`` strikes right after the sweep's first cell is stored."""
    write = ResultStore.write

    def first_then_fault(self, row, predictions):
        write(self, row, predictions)
        if len(list(self.cells_dir.glob("*.parquet"))) == 1:
            fault(self)

    monkeypatch.setattr(ResultStore, "write", first_then_fault)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_sweep_then_resume(preset, clean, tmp_path, monkeypatch, sig):
    results = with_artifacts(clean, tmp_path / "results")
    # a shell starts a background job with SIGINT ignored, and Python keeps an ignored SIGINT: give this
    # process Python's own Ctrl-C handler, as an interactive run of patchbench has
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    _after_first_cell(monkeypatch, lambda store: os.kill(os.getpid(), sig))
    r = sweep(preset, results, check=False)
    one_line(r, 128 + sig, f"aborted: {sig.name} received;", RESUME)
    whole_files(results)
    assert len(list((results / "cells").glob("*.parquet"))) == 1  # the finished cell is kept
    monkeypatch.undo()
    signal.signal(signal.SIGINT, previous)
    sweep(preset, results)
    same_as_clean(results, clean)


def test_write_access_lost_mid_sweep(preset, clean, tmp_path, monkeypatch):
    """Root ignores file modes: there the results live on a tmpfs remounted read-only mid-sweep."""
    root = os.geteuid() == 0
    instead = "running as root, file modes cannot take write access away (as non-root this test runs on chmod)"
    with (tmpfs(tmp_path / "disk", "8m", instead) if root else _nothing(tmp_path)) as base:
        results = with_artifacts(clean, base / "results")
        folders = [results / "cells", results / "predictions"]

        def lose(store):
            if root:
                subprocess.run(["mount", "-o", "remount,ro", str(base)], check=True)
            else:
                for d in folders:
                    d.chmod(0o555)

        _after_first_cell(monkeypatch, lose)
        r = sweep(preset, results, check=False)
        one_line(r, 2, "error: read-only file system writing" if root else "error: permission denied writing",
                 str(results), "restore write access", RESUME)
        if root:
            subprocess.run(["mount", "-o", "remount,rw", str(base)], check=True)
        else:
            for d in folders:
                d.chmod(0o755)
        whole_files(results)
        monkeypatch.undo()
        sweep(preset, results)
        same_as_clean(results, clean)


@contextmanager
def _nothing(path):
    yield path


def test_results_directory_removed_mid_sweep(preset, clean, tmp_path, monkeypatch):
    results = with_artifacts(clean, tmp_path / "results")
    _after_first_cell(monkeypatch, lambda store: shutil.rmtree(store.root))
    r = sweep(preset, results, check=False)
    one_line(r, 2, f"error: the results directory {results} was removed while this run wrote into it",
             "rerun the same command")
    assert not results.exists()  # not silently recreated with a part of the grid
    monkeypatch.undo()
    sweep(preset, results)  # from scratch: the same model, patch and cells
    same_as_clean(results, clean)


# ---- a damaged checkpoint or patch: refused, never used ---------------------------------------------


def test_damaged_checkpoint_is_refused_then_cleared(preset, clean, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(clean[0], results)
    (pt,) = (results / "artifacts" / "models").glob("*.pt")
    state = torch.load(pt, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 0.01  # still opens and fits the model: other weights
    torch.save(state, pt)
    shutil.rmtree(results / "cells")
    r = sweep(preset, results, check=False)
    line = one_line(r, 2, f"error: cached checkpoint {pt} holds weights", "changed or damaged", f"rm '{pt}'")
    assert not (results / "cells").exists() or not list((results / "cells").glob("*.parquet"))  # nothing used it
    cleared(line)
    sweep(preset, results)
    same_as_clean(results, clean)


def test_damaged_patch_is_refused_then_cleared(preset, clean, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(clean[0], results)
    (pt,) = (results / "artifacts" / "patches").glob("*.pt")
    blob = torch.load(pt, weights_only=True)
    torch.save({"pixels": 1 - blob["pixels"], "mask": blob["mask"]}, pt)  # a patch still, not the one recorded
    shutil.rmtree(results / "cells")
    r = sweep(preset, results, check=False)
    line = one_line(r, 2, f"error: patch file {pt} holds pixels", "changed or damaged", f"rm '{pt}'")
    cleared(line)
    sweep(preset, results)
    same_as_clean(results, clean)


def test_damaged_training_checkpoint_is_refused(tmp_path):
    from patchbench.config import TrainConfig
    from patchbench.training.loop import _resume_key, load_checkpoint, save_checkpoint

    cfg, net = TrainConfig(), torch.nn.Linear(3, 2)
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, {"model": net.state_dict(), "config_key": _resume_key(cfg)})
    assert torch.equal(load_checkpoint(path, cfg)["model"]["weight"], net.state_dict()["weight"])
    state = torch.load(path, weights_only=True)
    state["model"]["weight"] += 1  # the id stored in it no longer matches
    torch.save(state, path)
    with pytest.raises(PatchbenchError, match=rf"training checkpoint {re.escape(str(path))} holds weights that do not match.*rm '"):
        load_checkpoint(path, cfg)


# ---- malicious pickles: nothing in a data file runs ------------------------------------------------


class Evil:
    """Unpickled without restriction, it creates the marker file (as ``os.system`` would run anything)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "MARKER-code-ran"
    yield m
    assert not m.exists(), "a malicious pickle ran"


def _proves_evil(load, path: Path, marker: Path) -> None:
    """The file does run code when unpickled without restriction (so the test can fail); marker removed."""
    load(path)
    assert marker.exists()
    marker.unlink()


def _evil_cifar(folder: Path, name: str, marker: Path) -> Path:
    with open(folder / name, "wb") as f:
        pickle.dump({"data": Evil(marker), "labels": [0]}, f, protocol=2)
    _proves_evil(lambda p: pickle.load(open(p, "rb"), encoding="latin1"), folder / name, marker)
    return folder / name


def test_malicious_cifar_batch_is_never_unpickled(tmp_path, marker, monkeypatch):
    root = write_cifar(tmp_path / "data" / "cifar10", n=4)
    evil = _evil_cifar(root / "cifar-10-batches-py", "test_batch", marker)
    args = ["train-model", "--preset", "tomm2022-cifar10", "--results", tmp_path / "results"]
    # official MD5s first: the file is not read at all
    r = run_cli(*args, "--data-root", root, check=False)
    one_line(r, 2, f"error: {evil} is not the official cifar10 file (its MD5 differs from 40351d58", "data.verify: false")
    monkeypatch.setenv("PATCHBENCH_DATA", str(tmp_path / "data"))  # the same through $PATCHBENCH_DATA
    one_line(run_cli(*args, check=False), 2, f"error: {evil} is not the official cifar10 file")
    # a copy of one's own: no checksum, the restricted unpickler refuses the global
    r = run_cli(*args, "--set", "data.verify=false", check=False)
    one_line(r, 2, f"error: {evil} is not a plain data pickle (global io.open refused)", "nothing in it was run")
    assert not (tmp_path / "results").exists()  # nothing written


def test_malicious_cifar100_batch_is_refused(tmp_path, marker):
    root = write_cifar100(tmp_path / "data", n=(4, 4))
    evil = _evil_cifar(root / "cifar-100-python", "test", marker)
    r = run_cli("train-model", "--preset", "bmvc2023-cifar100", "--data-root", root, "--set", "data.verify=false",
                "--results", tmp_path / "results", check=False)
    one_line(r, 2, f"error: {evil} is not a plain data pickle")


def test_official_md5_is_checked_with_torchvision(tmp_path, monkeypatch):
    """A batch whose MD5 (hashlib, independently) is the official one is read; a changed byte is refused."""
    import torchvision.datasets

    from patchbench.data import load_split

    root = write_cifar(tmp_path / "c10", n=4)
    batch = root / "cifar-10-batches-py" / "test_batch"
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", [["test_batch", hashlib.md5(batch.read_bytes()).hexdigest()]])
    assert len(load_split("cifar10", str(root), "test")) == 4
    with open(batch, "r+b") as f:  # one pixel changed: still a valid pickle, no longer the official file
        data = f.read()
        f.seek(len(data) - 60)
        f.write(bytes([data[-60] ^ 1]))
    with pytest.raises(PatchbenchError, match="is not the official cifar10 file"):
        load_split("cifar10", str(root), "test")
    assert len(load_split("cifar10", str(root), "test", verify=False)) == 4


def _evil_torch(path: Path, marker: Path, blob) -> Path:
    torch.save(blob, path)
    _proves_evil(lambda p: torch.load(p, weights_only=False), path, marker)
    return path


def test_malicious_patch_model_checkpoint_and_weights_files_are_refused(preset, clean, tmp_path, marker):
    evil_patch = _evil_torch(tmp_path / "evil.pt", marker, {"pixels": Evil(marker), "mask": torch.ones(1, 4, 4)})
    r = run_cli("sweep", "--preset", preset, "--results", tmp_path / "r1", "--patches", evil_patch, check=False)
    one_line(r, 2, f"error: cannot read patch file {evil_patch}")

    results = with_artifacts(clean, tmp_path / "r2")
    (pt,) = (results / "artifacts" / "models").glob("*.pt")
    _evil_torch(pt, marker, {"features.0.weight": Evil(marker)})
    one_line(sweep(preset, results, check=False), 2, f"error: cached checkpoint {pt} is unreadable", f"rm '{pt}'")

    results = tmp_path / "r3"  # a per-epoch resume checkpoint where the model is not cached yet
    ckpt = results / "artifacts" / "models" / pt.with_suffix(".ckpt").name
    ckpt.parent.mkdir(parents=True)
    _evil_torch(ckpt, marker, {"model": Evil(marker)})
    one_line(sweep(preset, results, check=False), 2, f"error: cannot read training checkpoint {ckpt}", f"rm '{ckpt}'")

    from patchbench.models.imagenet import load_state_dict, weights_file

    weights = _evil_torch(tmp_path / "w.pth", marker, {"fc.weight": Evil(marker)})
    with pytest.raises(PatchbenchError, match="cannot read weights file"):
        load_state_dict("resnet50", str(weights))
    placed = weights_file("resnet50", "DEFAULT")  # placed by hand in torch's cache (offline use)
    placed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(weights, placed)
    try:
        with pytest.raises(PatchbenchError, match="nothing in it was run"):
            load_state_dict("resnet50", "DEFAULT")
    finally:
        placed.unlink()


# ---- the restricted unpickler itself ----------------------------------------------------------------


def test_restricted_unpickler_reads_what_pickle_reads():
    """Every protocol's numpy arrays, scalars, lists, dicts, str, bytes, numbers: equal to pickle.loads."""
    from patchbench.data.safe_pickle import safe_load

    obj = {"data": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "f": np.asfortranarray(np.eye(3, dtype=np.float32)),
           "labels": [1, 2, 3], "i": np.int64(7), "x": np.float16(2.5), "b": b"\x00\xff", "s": "é", "t": (1.5, None)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        blob = pickle.dumps(obj, protocol=protocol)
        ref, got = pickle.loads(blob), safe_load(io.BytesIO(blob), "x")
        for k in obj:
            if isinstance(ref[k], np.ndarray):
                assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]), (protocol, k)
                assert got[k].flags.f_contiguous == ref[k].flags.f_contiguous
            else:
                assert got[k] == ref[k] and type(got[k]) is type(ref[k]), (protocol, k)


def test_restricted_unpickler_reads_python2_batches():
    """The official CIFAR batches are Python 2 pickles (a str of raw bytes, numpy.core names): as pickle reads them."""
    from patchbench.data.safe_pickle import safe_load

    def s(b: bytes) -> bytes:  # SHORT_BINSTRING, Python 2's str
        return b"U" + bytes([len(b)]) + b

    raw = bytes([0, 200, 3, 255, 7, 128])
    blob = (b"\x80\x02}(" + s(b"data") + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b")
            + b"\x87R(K\x01K\x02K\x03\x86cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R(K\x03" + s(b"|")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + s(raw) + b"tb" + s(b"labels") + b"](K\x01K\x02eu.")
    with warnings.catch_warnings():  # pickle imports numpy.core, numpy's deprecated alias
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = pickle.loads(blob, encoding="latin1")
    got = safe_load(io.BytesIO(blob), "py2")
    assert np.array_equal(got["data"], ref["data"]) and got["data"].dtype == np.uint8 and got["labels"] == ref["labels"]


@pytest.mark.parametrize("payload", ["global", "object array", "codec", "subclass"])
def test_restricted_unpickler_refuses_everything_else(payload, marker):
    from patchbench.data.safe_pickle import UnsafePickle, safe_load

    blob = {
        "global": lambda: pickle.dumps({"data": Evil(marker)}),
        "object array": lambda: pickle.dumps(np.array([1, "a"], dtype=object)),
        "codec": lambda: b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.",
        "subclass": lambda: pickle.dumps(np.ma.masked_array([1, 2])),
    }[payload]()
    refused = {"global": "global io.open", "object array": "object dtype object", "codec": "codec 'zlib'",
               "subclass": "global numpy.ma.core._mareconstruct"}[payload]
    with pytest.raises(UnsafePickle, match=rf"^file\.pkl is not a plain data pickle \({refused} refused\)"):
        safe_load(io.BytesIO(blob), "file.pkl")


def test_debug_shows_the_traceback_before_the_line():
    r = run_cli("sweep", "--preset", "nope", check=False)
    one_line(r, 2, "error: unknown preset 'nope'")
    r = run_cli("--debug", "sweep", "--preset", "nope", check=False)
    assert r.returncode == 2 and r.stderr.startswith("Traceback (most recent call last)")
    assert r.stderr.strip().splitlines()[-1].startswith("error: unknown preset 'nope'")
