"""The patch cache owns every stored patch (issue 34 item 4): ordinary and targeted patches and
adaptive runs are stored and found by key, every whole entry is listed for the audit, and a results
directory written before the cache existed (its layout spelled out here by hand) is read as it is."""

import json

import pytest
import torch

from patchbench.attacks.patch import Patch, Placement
from patchbench.cache.patch_cache import PatchCache, PatchKey
from patchbench.errors import PatchbenchError


def patch(value: float, **meta) -> Patch:
    pixels = torch.full((1, 4, 4), value)
    return Patch(pixels, torch.ones_like(pixels), {**Placement("top-right", 0).meta(), **meta})


def test_a_patch_is_stored_and_found_by_its_key(tmp_path):
    cache = PatchCache(tmp_path)
    untargeted = PatchKey.of("lavan-4px-untargeted-top-right", {"attack": "lavan", "size": 4})
    targeted = PatchKey.of("lavan-4px-t3-top-right", {"attack": "lavan", "size": 4, "target": 3})
    assert untargeted.digest != targeted.digest and cache.load(untargeted) is None
    cache.save(untargeted, patch(0.25, attack="lavan"))
    cache.save(targeted, patch(0.75, attack="lavan", target=3))
    assert float(cache.load(untargeted).pixels.mean()) == 0.25
    assert float(cache.load(targeted).pixels.mean()) == 0.75
    assert cache.find(targeted.digest) == cache.path(targeted)


def test_an_adaptive_run_is_stored_whole_and_found_by_its_key(tmp_path):
    cache = PatchCache(tmp_path)
    key = PatchKey.of("lavan-adaptive-lgs-lam2.3-4px-t0-top-right", {"defense": "lgs", "lam": 2.3}, run=True)
    assert cache.load_run(key) is None
    snaps = [patch(v, step=s, run_hash=key.digest) for s, v in ((0, 0.0), (5, 0.5))]
    cache.save_run(key, snaps, [{"step": 0}, {"step": 5}], {"defense": "lgs"})
    loaded, history = cache.load_run(key)
    assert [p.meta["step"] for p in loaded] == [0, 5] and history == [{"step": 0}, {"step": 5}]
    assert [float(p.pixels.mean()) for p in loaded] == [0.0, 0.5]
    cache.path(key).joinpath("step00005.pt").unlink()  # a snapshot gone: the run is not whole
    assert cache.load_run(key) is None
    cache.path(key).joinpath("history.json").write_text("{not json")
    with pytest.raises(PatchbenchError, match="is damaged"):
        cache.load_run(key)


def test_a_results_directory_of_the_old_layout_is_read_as_it_is(tmp_path):
    """The layout patchbench wrote before the cache owned it: ``artifacts/patches/<label>-<hash>.pt``
    and ``artifacts/patches/adaptive/<label>-<hash>/stepNNNNN.pt`` + ``history.json``."""
    folder = tmp_path / "artifacts" / "patches"
    patch(0.5, attack="lavan").save(folder / "lavan-4px-t0-top-right-0123456789ab")
    run = folder / "adaptive" / "lavan-adaptive-wlgs-lam2.3-4px-t0-top-right-ba9876543210"
    for step in (0, 8):
        patch(step / 10, step=step, run_hash="ba9876543210").save(run / f"step{step:05d}")
    (run / "history.json").write_text(json.dumps({"steps": [0, 8], "history": [{}, {}], "config": {}}))
    (folder / "stray.json").write_text("{}")  # meta without a patch: not an entry
    cache = PatchCache(tmp_path)
    assert cache.load(PatchKey("lavan-4px-t0-top-right", "0123456789ab")) is not None
    snaps, _ = cache.load_run(PatchKey("lavan-adaptive-wlgs-lam2.3-4px-t0-top-right", "ba9876543210", run=True))
    assert [p.meta["step"] for p in snaps] == [0, 8]
    found = {pt.relative_to(folder).as_posix() for pt, meta in cache.entries()}
    assert found == {"lavan-4px-t0-top-right-0123456789ab.pt",
                     "adaptive/lavan-adaptive-wlgs-lam2.3-4px-t0-top-right-ba9876543210/step00000.pt",
                     "adaptive/lavan-adaptive-wlgs-lam2.3-4px-t0-top-right-ba9876543210/step00008.pt"}
    with pytest.raises(PatchbenchError, match="2 cached patch artifact"):
        cache.find("step0000")


def test_an_empty_results_directory_has_no_entries(tmp_path):
    cache = PatchCache(tmp_path / "nowhere")
    assert cache.entries() == []
    with pytest.raises(PatchbenchError, match="no cached patch artifact"):
        cache.find("lavan")
