"""docs/EXTENDING.md made true: the paper plugin on that page (one defense, one patch attack, a
preset, a reference CSV and a table), its files taken verbatim from the page into a temporary
folder outside the package, registered the way the page says (``PATCHBENCH_PLUGINS`` and the folder
on the path, read by the same ``load_plugins`` the CLI calls), then the page's commands run by the
CLI's entry point (``main``): ``sweep``, ``table``, ``defend``, ``reproduce`` (which runs the adaptive
attack through the plugin's defense) and ``claims``. They run in the test's process, the plugin
unregistered afterwards (a process of their own paid 4.5 s of imports: torch, torch._dynamo, scipy);
what only a fresh process shows, the CLI reading ``PATCHBENCH_PLUGINS`` and ``PYTHONPATH`` before any
command, a user's shell with a broken plugin shows below. Every plugin mistake is one error line naming
it, registering nothing."""

import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import cells, needs_fmnist, run_cli

REPO = Path(__file__).parents[1]

DOC = REPO / "docs" / "EXTENDING.md"


def doc_files() -> dict[str, str]:
    """The plugin's files as docs/EXTENDING.md shows them: fenced blocks whose info string names a path."""
    return dict(re.findall(r"```\w+ (toy2024/\S+)\n(.*?)```", DOC.read_text(), re.S))


def doc_commands() -> dict[str, list[str]]:
    """The ``patchbench ...`` lines of the page's shell blocks, by command (comments dropped)."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    lines = [ln.split("#")[0] for b in blocks for ln in b.splitlines() if ln.startswith("patchbench ")]
    return {args[0]: args for args in (shlex.split(ln)[1:] for ln in lines)}


def patchbench(root: Path, *args, plugins: str = "toy2024", check: bool = True, cwd=None) -> subprocess.CompletedProcess:
    """``python -m patchbench ARGS`` with the plugin registered as the docs say (the folder above it
    on PYTHONPATH, after this checkout, and its module name in PATCHBENCH_PLUGINS)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{root}", "PATCHBENCH_PLUGINS": plugins}
    proc = subprocess.run([sys.executable, "-m", "patchbench", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"patchbench {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def page_plugin(tmp_path, monkeypatch):
    """The page's three files under ``tmp_path/plugins``, registered in this process as the CLI registers a
    plugin (:func:`~patchbench.plugins.load_plugins` reads ``PATCHBENCH_PLUGINS`` and imports the module from
    the path), the working directory ``tmp_path`` (the page's relative paths); every registry as before
    afterwards, pass or fail."""
    from patchbench.attacks import ATTACKS
    from patchbench.defenses import DEFENSES
    from patchbench.papers import PAPERS
    from patchbench.plugins import load_plugins

    root = tmp_path / "plugins"
    files = doc_files()
    assert sorted(files) == ["toy2024/__init__.py", "toy2024/presets/toy2024-demo.yaml",
                             "toy2024/reference/toy2024_accuracy.csv"]
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PATCHBENCH_PLUGINS", "toy2024")
    monkeypatch.chdir(tmp_path)
    saved = [(registry, dict(registry)) for registry in (PAPERS, DEFENSES, ATTACKS)]
    try:
        assert load_plugins(PAPERS) == ["toy2024"]
        assert "toy2024" in PAPERS and "meanpull" in DEFENSES and "ce-lavan" in ATTACKS
        yield root
    finally:
        for registry, entries in saved:
            registry.clear()
            registry.update(entries)
        sys.modules.pop("toy2024", None)


@needs_fmnist
def test_the_plugin_on_the_page_through_sweep_table_defend_and_adaptive(tmp_path, page_plugin):
    commands = doc_commands()
    assert list(commands) == ["sweep", "table", "defend", "reproduce", "claims"]
    run = run_cli  # `patchbench ARGS` by the CLI's entry point; a non-zero exit fails with its stderr
    results = tmp_path / "results"

    run(*commands["sweep"])
    df = cells(results)
    attacked = df[df["attack"] == "ce-lavan"]
    assert sorted(attacked["defense"].unique()) == ["meanpull", "none"]
    assert sorted(attacked.loc[attacked["defense"] == "meanpull", "lam"]) == [1.0, 2.0]
    assert set(df["preset"]) == {"toy2024-demo"} and (df["n"] == 64).all()

    table = pd.read_csv(io.StringIO(run(*commands["table"]).stdout))
    assert list(table.columns) == ["Defense", "λ", "ours", "paper", "Δ"]
    assert table[["Defense", "λ", "paper"]].fillna(-1).values.tolist() == [["meanpull", 1, 55], ["meanpull", 2, 60], ["none", -1, 40]]
    ours = 100 * attacked.sort_values(["defense", "lam"])["accuracy"].to_numpy()
    assert table["ours"].to_numpy() == pytest.approx(ours, abs=0.005)
    assert table["Δ"].to_numpy() == pytest.approx(ours - [55, 60, 40], abs=0.01)

    ramp = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (20, 1))  # defend reads no preset: the plugin's defense is known
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    run(*commands["defend"])
    got, x = np.asarray(Image.open(tmp_path / "defended" / "ramp.png")) / 255.0, ramp / 255.0
    assert np.abs(got - (x + 0.5 * (x.mean() - x))).max() <= 1 / 255  # min(1, λ·strength) = half-way to the mean

    run(*commands["reproduce"])
    adaptive = cells(results).query("attack == 'lavan-adaptive'")
    through = adaptive[adaptive["defense"] == "meanpull"]
    assert set(adaptive["attack_through"]) == {"meanpull"} and set(adaptive["defense"]) == {"none", "meanpull"}
    assert sorted(through["attack_step"]) == [0, 1, 2, 3] and set(through["lam"]) == {2.0}
    assert (tmp_path / "reports" / "toy2024-1.md").read_text().count("meanpull") == 2

    # the plugin's claim, checked on those cells: meanpull λ 2 vs no defense, the same patch and the same 64 images
    verdicts = json.loads(run(*commands["claims"]).stdout)["claims"]
    assert [(v["paper"], v["claim"]) for v in verdicts] == [("toy2024", "meanpull-beats-none")]
    v = verdicts[0]
    assert v["test"] == "exact McNemar" and v["test_verdict"] in ("holds", "contradicted", "inconclusive")
    # the audit `reproduce` ran beside the cells: a flagged cell makes the claim unreliable, the indicator named
    assert v["verdict"] == ("unreliable" if v["audit"] else v["test_verdict"]) and all(a in v["why"] for a in v["audit"])
    assert (v["n_images"], v["n_replicates"]) == (64, 1) and v["preset"] == "toy2024-demo"
    acc = {d: a for d, lam, a in attacked[["defense", "lam", "accuracy"]].itertuples(index=False) if d == "none" or lam == 2}
    assert v["effect"] == pytest.approx(acc["meanpull"] - acc["none"])  # 64 images, ce-lavan cells of the sweep
    assert (v["p_holm"] < 0.05) == (v["test_verdict"] != "inconclusive") and len(v["cells"]) == 2


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
     "plugin {m}: defense name 'lgs' is already registered (LGS); LGS needs another"),
    ("from patchbench.api import LaVAN\nclass Mine(LaVAN):\n    name = 'lavan'\nATTACKS = [Mine]",
     "plugin {m}: attack name 'lavan' is already registered (LaVAN); Mine needs another"),
    ("from patchbench.api import LaVAN\nclass Mine(LaVAN):\n    pass\nATTACKS = [Mine]",
     "plugin {m}: attack Mine has no name of its own (set its `name`)"),
    ("import dataclasses\nfrom patchbench.api import Defense, LaVAN\n"
     "Fresh = dataclasses.dataclass(type('Fresh', (Defense,), {'name': 'fresh', 'maps': lambda s, x, m=None: {'out': x}, "
     "'uses_lambda': False}))\nDEFENSES = [Fresh]\nclass Mine(LaVAN):\n    name = 'lavan'\nATTACKS = [Mine]",
     "plugin {m}: attack name 'lavan' is already registered (LaVAN); Mine needs another"),
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
    plugins._entry_point_modules.cache_clear()  # read once per process: this test's distributions, then the real ones
    try:
        assert plugins.plugin_names() == ["toy2024", "other", "installed_paper"]
        monkeypatch.setenv("PATCHBENCH_PLUGINS", "")
        assert plugins.plugin_names() == ["installed_paper", "other"]
    finally:
        plugins._entry_point_modules.cache_clear()
