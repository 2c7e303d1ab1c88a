"""docs/EXTENDING.md made true: a paper plugin with one defense, one patch attack, a preset, a
reference CSV and a table, written in a temporary folder outside the package exactly as the docs
show it, registered the way they say (``PATCHBENCH_PLUGINS`` + ``PYTHONPATH``), then run by the CLI
in a subprocess like a user would: ``sweep``, ``table`` and ``reproduce`` (which runs the adaptive
attack through the plugin's defense)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import FMNIST_DIR, cells, needs_fmnist

REPO = Path(__file__).parents[1]

# ---- the plugin, as docs/EXTENDING.md shows it (keep the two the same) --------------------------

PLUGIN = '''\
"""Toy 2024: a paper plugin with its own defense, patch attack, preset and table."""

import dataclasses
from typing import ClassVar

import pandas as pd
import torch

from patchbench.api import (
    AdaptiveConfig, Defense, LaVAN, Paper, Table, check_adaptive, fmt_delta, fmt_pct, preset_cells,
    run_adaptive_section,
)


@dataclasses.dataclass
class MeanPull(Defense):
    """Pull each image toward its mean by min(1, λ·strength)."""

    name: ClassVar[str] = "meanpull"
    gradient: ClassVar[str] = "exact"  # autograd through maps and apply is the true gradient
    strength: float = 0.1

    def validate(self):
        self.require("strength", self.strength >= 0, "a number >= 0")

    def maps(self, x, model=None):  # everything independent of λ, once per batch
        return {"mean": x.mean((1, 2, 3), keepdim=True)}

    def apply(self, x, maps, lam):  # cheap, per λ
        a = min(1.0, float(lam) * self.strength)
        return x + a * (maps["mean"] - x)


class CELaVAN(LaVAN):
    """LaVAN with cross-entropy toward the target class instead of the logit margin."""

    name = "ce-lavan"

    def loss(self, logits, labels):
        if self.target is None:
            return super().loss(logits, labels)
        return torch.nn.functional.cross_entropy(logits, torch.full_like(labels, self.target))


def build_accuracy(table, cells, ctx):
    """Attacked accuracy (%) per defense and λ: ours beside the paper's (reference/toy2024_accuracy.csv)."""
    df = preset_cells(cells, ctx.preset)
    df = df[df["attack"] == table.option("attack")].drop_duplicates(["defense", "lam"], keep="last")
    paper = ctx.reference("toy2024_accuracy").fillna({"lam": -1}).set_index(["defense", "lam"])["accuracy_pct"]
    rows = []
    for _, r in df.sort_values(["defense", "lam"], na_position="first").iterrows():
        ours, theirs = 100 * r["accuracy"], paper.get((r["defense"], -1 if pd.isna(r["lam"]) else r["lam"]))
        rows.append({"Defense": r["defense"], "λ": r["lam"], "ours": fmt_pct(ours), "paper": fmt_pct(theirs),
                     "Δ": fmt_delta(ours, theirs)})
    return pd.DataFrame(rows), f"Toy 2024 Table 1: accuracy under {table.option('attack')} ({ctx.preset})"


TABLES = {"toy2024-1": Table("toy2024-1", "toy2024", "Table 1: accuracy under the patch", build_accuracy,
                             paper_presets=(), demo_preset="toy2024-demo", options=(("attack", "ce-lavan"),))}

PAPER = Paper(
    name="toy2024",
    title="Toy 2024: a mean-pull defense against a cross-entropy LaVAN",
    module=__name__,
    presets={"demo": ("toy2024-demo",)},
    tables=TABLES,
    sections={"adaptive": AdaptiveConfig},  # the generic adaptive attack, as a preset section
    validate=check_adaptive,
    extra_steps=run_adaptive_section,  # `reproduce` runs it after the preset's sweep
)
DEFENSES = [MeanPull]
ATTACKS = [CELaVAN]
'''

PRESET = '''\
name: toy2024-demo
paper: toy2024
experiment: patch-defense
tables: [toy2024-1]
device: cpu
data: {dataset: fashion-mnist, root: %(root)s, image_size: 28, eval_n: 64, ssim_n: 0, batch_size: 500}
model:
  arch: small_vgg
  train: {epochs: 1, train_n: 1024, batch_size: 128}
attacks:
  - {name: ce-lavan, sizes: [6], target: 0, steps: 4, batch_size: 32, train_pool: 64, success_n: 64,
     optimizer: adam, lr: 0.05, seeds: []}
defenses:
  - {name: meanpull, strength: 0.2, lambdas: [1, 2]}
adaptive: {defenses: [meanpull], lam: 2, steps: 3, record_every: 1}
'''

REFERENCE = '''\
defense,lam,accuracy_pct
none,,40.0
meanpull,1,55.0
meanpull,2,60.0
'''


def write_plugin(root: Path) -> Path:
    """The plugin folder ``root/toy2024`` (package, preset, reference); returns ``root``."""
    pkg = root / "toy2024"
    (pkg / "presets").mkdir(parents=True)
    (pkg / "reference").mkdir()
    (pkg / "__init__.py").write_text(PLUGIN)
    (pkg / "presets" / "toy2024-demo.yaml").write_text(PRESET % {"root": FMNIST_DIR})
    (pkg / "reference" / "toy2024_accuracy.csv").write_text(REFERENCE)
    return root


def patchbench(root: Path, *args, plugins: str = "toy2024", check: bool = True) -> subprocess.CompletedProcess:
    """``python -m patchbench ARGS`` with the plugin registered as the docs say."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{root}", "PATCHBENCH_PLUGINS": plugins}
    proc = subprocess.run([sys.executable, "-m", "patchbench", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"patchbench {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@needs_fmnist
def test_toy_plugin_through_sweep_table_and_adaptive(tmp_path):
    root, results = write_plugin(tmp_path / "plugins"), tmp_path / "results"
    common = ["--results", results, "--no-progress"]

    patchbench(root, "sweep", "--preset", "toy2024-demo", *common)
    df = cells(results)
    attacked = df[df["attack"] == "ce-lavan"]
    assert sorted(attacked["defense"].unique()) == ["meanpull", "none"]
    assert sorted(attacked.loc[attacked["defense"] == "meanpull", "lam"]) == [1.0, 2.0]
    assert set(df["preset"]) == {"toy2024-demo"} and (df["n"] == 64).all()

    table = pd.read_csv(io.StringIO(patchbench(root, "table", "toy2024-1", "--results", results, "--format", "csv").stdout))
    assert list(table.columns) == ["Defense", "λ", "ours", "paper", "Δ"]
    assert table[["Defense", "λ", "paper"]].fillna(-1).values.tolist() == [["meanpull", 1, 55], ["meanpull", 2, 60], ["none", -1, 40]]
    ours = 100 * attacked.sort_values(["defense", "lam"])["accuracy"].to_numpy()
    assert table["ours"].to_numpy() == pytest.approx(ours, abs=0.005)
    assert table["Δ"].to_numpy() == pytest.approx(ours - [55, 60, 40], abs=0.01)

    image = tmp_path / "ramp.png"  # a command that reads no preset knows the plugin's defense too
    Image.fromarray(np.tile(np.arange(0, 200, 10, dtype=np.uint8), (20, 1))).save(image)
    patchbench(root, "defend", image, "--defense", "meanpull", "--lam", "2", "--param", "strength=0.25", "--out", tmp_path / "defended")
    x = np.asarray(Image.open(image)) / 255.0
    got = np.asarray(Image.open(tmp_path / "defended" / "ramp.png")) / 255.0
    assert np.abs(got - (x + 0.5 * (x.mean() - x))).max() <= 1 / 255  # min(1, λ·strength) = half-way to the mean

    patchbench(root, "reproduce", "toy2024", "--preset-scale", "demo", *common, "--out", tmp_path / "reports")
    adaptive = cells(results).query("attack == 'lavan-adaptive'")
    through = adaptive[adaptive["defense"] == "meanpull"]
    assert set(adaptive["attack_through"]) == {"meanpull"} and set(adaptive["defense"]) == {"none", "meanpull"}
    assert sorted(through["attack_step"]) == [0, 1, 2, 3] and set(through["lam"]) == {2.0}
    assert (tmp_path / "reports" / "toy2024-1.md").read_text().count("meanpull") == 2


def test_a_broken_plugin_stops_every_command_with_one_line_naming_it(tmp_path):
    (tmp_path / "typo2024.py").write_text("from patchbench.api import Defence\n")
    bad = patchbench(tmp_path, "list", "defenses", plugins="typo2024", check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == ("error: plugin typo2024 failed to import: ImportError: cannot import name 'Defence' from "
                          f"'patchbench.api' ({REPO / 'patchbench' / 'api.py'}) ($PATCHBENCH_PLUGINS or the "
                          "patchbench.plugins entry points name it)\n")


@pytest.mark.parametrize("source, error", [
    ("X = 1", "plugin {m} declares nothing: give it PAPER, DEFENSES or ATTACKS"),
    ("PAPER = 'toy'", "plugin {m}: PAPER must be a patchbench.api.Paper, got str"),
    ("DEFENSES = ['blur']", "plugin {m}: DEFENSES must be a list of Defense subclasses"),
    ("from patchbench.api import LaVAN\nATTACKS = LaVAN", "plugin {m}: ATTACKS must be a list of Attack subclasses"),
    ("from patchbench.api import DEFENSES\nDEFENSES = [DEFENSES['lgs']]",
     "plugin {m}: defense name 'lgs' is registered twice: LGS and LGS"),
    ("from patchbench.api import LaVAN\nclass Mine(LaVAN):\n    name = 'lavan'\nATTACKS = [Mine]",
     "plugin {m}: attack name 'lavan' is taken by LaVAN; Mine needs another"),
    ("from patchbench.api import LaVAN\nclass Mine(LaVAN):\n    pass\nATTACKS = [Mine]",
     "plugin {m}: attack class Mine must set its own class attribute `name`"),
    ("import dataclasses\nfrom patchbench.api import Defense, LaVAN\n"
     "Fresh = dataclasses.dataclass(type('Fresh', (Defense,), {'name': 'fresh', 'maps': lambda s, x, m=None: {'out': x}, "
     "'uses_lambda': False}))\nDEFENSES = [Fresh]\nclass Mine(LaVAN):\n    name = 'lavan'\nATTACKS = [Mine]",
     "plugin {m}: attack name 'lavan' is taken by LaVAN; Mine needs another"),
    ("from patchbench.api import Paper\nPAPER = Paper(name='icaart2022', title='x', module=__name__, presets={})",
     "plugin {m}: paper name 'icaart2022' is already registered"),
    ("raise RuntimeError('boom')", "plugin {m} failed to import: RuntimeError: boom ($PATCHBENCH_PLUGINS or the "
                                   "patchbench.plugins entry points name it)"),
])
def test_every_plugin_mistake_is_refused_before_anything_is_registered(tmp_path, monkeypatch, source, error):
    from patchbench.attacks import ATTACKS
    from patchbench.defenses import DEFENSES
    from patchbench.errors import PatchbenchError
    from patchbench.papers import PAPERS
    from patchbench.plugins import load_plugin

    module = f"mistake_{abs(hash(source))}"
    (tmp_path / f"{module}.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = (dict(PAPERS), dict(DEFENSES), dict(ATTACKS))
    with pytest.raises(PatchbenchError) as exc:
        load_plugin(module, dict(PAPERS))
    assert str(exc.value) == error.format(m=module)
    assert (dict(PAPERS), dict(DEFENSES), dict(ATTACKS)) == before


def test_plugin_names_from_the_environment_then_the_entry_points(monkeypatch):
    from importlib.metadata import EntryPoint

    from patchbench import plugins

    monkeypatch.setenv("PATCHBENCH_PLUGINS", " toy2024, other ,toy2024,")
    monkeypatch.setattr(plugins, "entry_points", lambda group: [
        EntryPoint("x", "installed_paper", group), EntryPoint("y", "other:PAPER", group)] if group == plugins.GROUP else [])
    assert plugins.plugin_names() == ["toy2024", "other", "installed_paper"]
