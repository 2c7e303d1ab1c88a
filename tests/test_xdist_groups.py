"""`make test`'s `--dist loadgroup` keeps each ``xdist_group`` on one worker (tests/xdist_groups.py): the
paper demos and trained models the groups share run once per session, not once per worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

MODULE = '''
import os
from pathlib import Path
import pytest

def ran(name):
    Path(os.environ["RAN"], name).write_text(os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.xdist_group("shared")
@pytest.mark.parametrize("i", range(3))
def test_grouped(i):
    ran(f"{__name__}-grouped-{i}")

@pytest.mark.parametrize("i", range(3))
def test_alone(i):
    ran(f"{__name__}-alone-{i}")
'''


def test_a_group_spread_over_two_modules_runs_on_one_worker(tmp_path):
    for name in ("test_one", "test_two"):
        (tmp_path / f"{name}.py").write_text(MODULE)
    (tmp_path / "conftest.py").write_text("from xdist_groups import pytest_collection_finish  # noqa: F401\n")
    ran = tmp_path / "ran"
    ran.mkdir()
    env = {**os.environ, "RAN": str(ran), "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # xdist only (-p): three pytest processes start faster
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "xdist", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                           "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = {f.name: f.read_text() for f in ran.iterdir()}
    assert len(workers) == 12  # every test ran
    grouped = {w for name, w in workers.items() if "-grouped-" in name}
    assert len(grouped) == 1, workers  # six tests of one group, two modules: one worker
    assert set(workers.values()) == {"gw0", "gw1"}  # the others were spread (both workers ran)
