"""The house rules: a new defense is one file plus one registry line, and is then usable by
every command (through a plugin, with sweep, table and the adaptive attack: test_extending.py);
a paper's specifics live only in its folder."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli

PACKAGE = Path(__file__).parents[1] / "patchbench"

TOY_DEFENSE = '''
"""A toy defense written the way docs/EXTENDING.md says: pull each image toward its mean."""
import dataclasses
from typing import ClassVar

from patchbench.defenses.base import Defense


@dataclasses.dataclass
class Toy(Defense):
    """Toy: x' = x + min(1, λ·strength)·(mean(x) - x)."""

    name: ClassVar[str] = "toy"
    gradient: ClassVar[str] = "exact"
    strength: float = 0.1

    def maps(self, x, model=None):
        return {"mean": x.mean((1, 2, 3), keepdim=True)}

    def apply(self, x, maps, lam):
        a = min(1.0, float(lam) * self.strength)
        return x + a * (maps["mean"] - x)
'''


def test_no_generic_module_names_a_paper():
    offenders = []
    for f in PACKAGE.rglob("*.py"):
        if "papers" in f.relative_to(PACKAGE).parts:
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"icaart2022|tomm2022", line, re.IGNORECASE):
                offenders.append(f"{f.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert offenders == []


def test_every_paper_is_one_folder_with_its_presets_and_references():
    from patchbench.presets import load_preset
    from patchbench.papers import PAPERS

    for name, paper in PAPERS.items():
        assert paper.folder == PACKAGE / "papers" / name
        presets = sorted(p.stem for p in paper.preset_dir().glob("*.yaml"))
        assert set(presets) >= {p for scale in paper.presets.values() for p in scale}
        assert all(load_preset(p).paper == name for p in presets)
        assert list((paper.folder / "reference").glob("*.csv"))
        assert all(t.paper == name for t in paper.tables.values())


@pytest.fixture
def toy_registered(tmp_path, monkeypatch):
    """The toy defense as a new file, registered (and checked) by ``register_defense`` for this test
    (a plugin outside the package, through the CLI: tests/test_extending.py)."""
    from patchbench.defenses import DEFENSES, register_defense

    path = tmp_path / "toy_defense.py"
    path.write_text(TOY_DEFENSE)
    spec = importlib.util.spec_from_file_location("toy_defense", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "toy_defense", module)
    spec.loader.exec_module(module)
    register_defense(module.Toy)
    yield module.Toy
    del DEFENSES["toy"]


def test_toy_defense_through_defend_and_its_gradient(toy_registered, tmp_path):
    from PIL import Image

    import numpy as np

    src = tmp_path / "in.png"
    ramp = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (20, 1))
    Image.fromarray(ramp).save(src)
    run_cli("defend", src, "--defense", "toy", "--lam", "2", "--param", "strength=0.25", "--out", tmp_path / "out")
    x = ramp / 255.0
    expected = np.round(255 * (x + 0.5 * (x.mean() - x)))  # min(1, λ·strength) = 0.5 of the way to the mean
    got = np.asarray(Image.open(tmp_path / "out" / "in.png")).astype(float)
    assert got.shape == (20, 20) and np.abs(got - expected).max() <= 1
    assert "toy" in run_cli("list", "defenses").stdout
    bad = run_cli("defend", src, "--defense", "toy", "--param", "nope=1", "--out", tmp_path / "bad", check=False)
    assert bad.returncode == 2 and not (tmp_path / "bad").exists()
    assert bad.stderr == "error: unknown parameter 'nope' for defense toy; allowed: strength\n"
    # the declared gradient: autograd through maps and apply, forward value unchanged
    d = toy_registered(strength=0.25)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    y = d.differentiable(x, 2.0)
    assert torch.equal(y.detach(), d(x.detach(), 2.0))
    (g,) = torch.autograd.grad(y[:, :, 0, 0].sum(), x)
    assert g[0, 0, 0, 0] == pytest.approx(0.5 + 0.5 / 64)
