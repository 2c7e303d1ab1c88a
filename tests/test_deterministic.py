"""`patchbench --deterministic`: strict deterministic algorithms and one torch thread, so a rerun on
the same machine is bit-identical whatever its core count or load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import needs_fmnist
from patchbench import devices


@pytest.fixture
def restore_torch():
    threads = torch.get_num_threads()
    yield
    devices.STRICT["on"] = False
    torch.set_num_threads(threads)
    torch.backends.cudnn.deterministic = False
    devices.deterministic()


def test_strict_determinism_fixes_threads_and_refuses_nondeterministic_ops(restore_torch):
    devices.strict_determinism(threads=1)
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    devices.resolve_device("cpu")  # a command resolving its device keeps the strict setting
    assert not torch.is_deterministic_algorithms_warn_only_enabled()


def test_without_the_flag_a_missing_deterministic_op_only_warns(restore_torch):
    devices.resolve_device("cpu")
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()


def train(tmp, threads: int, *flags: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "patchbench", *flags, "train-model", "--preset", "demo-fmnist", "--results", str(tmp),
            "--no-progress", "--set", "data.image_size=28", "--set", "model.train.epochs=1",
            "--set", "model.train.train_n=1500", "--set", "model.train.batch_size=100",
            "--set", "model.train.test_n=500"]  # the weights are compared, not the score: 500 test images
    subprocess.run(args, check=True, capture_output=True, text=True, env=env, timeout=600)
    (ckpt,) = (tmp / "artifacts" / "models").glob("*.pt")
    return torch.load(ckpt, map_location="cpu", weights_only=False)


@needs_fmnist
@pytest.mark.slow
def test_deterministic_training_is_bit_identical_across_thread_counts(tmp_path):
    one = train(tmp_path / "a", 1, "--deterministic")
    two = train(tmp_path / "b", 2, "--deterministic")
    state_one, state_two = one.get("state_dict", one), two.get("state_dict", two)
    assert state_one.keys() == state_two.keys()
    for k in state_one:
        if isinstance(state_one[k], torch.Tensor):
            assert torch.equal(state_one[k], state_two[k]), k


def test_with_compiling_on_inductor_is_told_too(restore_torch, monkeypatch):
    """Without ``--compile`` only the eager flag is set (torch's public call would import torch._inductor for its
    own flag); with it, inductor's ``deterministic`` follows as torch's call sets it."""
    import torch._inductor.config as inductor_config

    from patchbench.defenses import compiling

    monkeypatch.setattr(inductor_config, "deterministic", False)
    monkeypatch.setitem(compiling.SWITCH, "on", True)
    devices.resolve_device("cpu")
    assert inductor_config.deterministic and torch.are_deterministic_algorithms_enabled()
