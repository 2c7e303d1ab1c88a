"""`patchbench --compile`: the switch, what a cell records, and the eager fallback."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from typer.testing import CliRunner

from patchbench import devices
from patchbench.defenses import compiling
from patchbench.cli.app import app


@pytest.fixture
def restore_switch():
    on, env = compiling.SWITCH["on"], os.environ.get("PATCHBENCH_COMPILE")
    yield
    compiling.SWITCH["on"] = on
    if env is None:
        os.environ.pop("PATCHBENCH_COMPILE", None)
    else:
        os.environ["PATCHBENCH_COMPILE"] = env


def test_the_flag_switches_compiling_on_for_this_process_and_its_workers(restore_switch):
    compiling.enable(False)
    assert devices.machine()["compiled"] is False
    result = CliRunner().invoke(app, ["--compile", "list", "defenses"])
    assert result.exit_code == 0, result.output
    assert compiling.enabled() and os.environ["PATCHBENCH_COMPILE"] == "1"  # torchrun / --workers inherit it
    assert devices.machine()["compiled"] is True  # every cell computed now says so


def test_compile_failure_falls_back_to_eager(monkeypatch):
    """No C++ compiler or Triton: one warning, then the eager function's own result."""
    def broken(fn):
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler found")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    double = compiling.compiled(lambda t: t * 2)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        assert torch.equal(double(torch.ones(3)), torch.full((3,), 2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))  # eager from then on, no second warning
