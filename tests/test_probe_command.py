"""The probes' shared command ending (patchbench/probes/command.py): a user error is one ``error:``
line and exit code 2, a model that is not cached is named as such (probes never train), for every
probe alike."""

import importlib

import pytest

from conftest import needs_fmnist

PROBES = {"npixel_drop": [], "volume_order": [], "mask_coverage": [], "attention": [],
          "lgs_factor": ["--patch", "nowhere.pt"]}


@pytest.mark.parametrize("module", sorted(PROBES))
def test_an_unknown_preset_is_one_error_line_and_exit_2(module, capsys, tmp_path):
    main = importlib.import_module(f"patchbench.probes.{module}").main
    assert main(["--preset", "no-such-preset", *PROBES[module]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no-such-preset" in err[0]


@needs_fmnist
def test_a_model_not_cached_is_named_and_not_trained(capsys, tmp_path):
    from patchbench.probes.npixel_drop import main

    assert main(["--preset", "demo-bmvc-fmnist", "--results", str(tmp_path), "--n", "2", "--ns", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "probes never train a model" in err[0]
    assert not any(tmp_path.rglob("*.pt"))


def test_a_bad_list_of_ns_is_a_user_error(capsys):
    from patchbench.probes.npixel_drop import main

    assert main(["--preset", "demo-bmvc-fmnist", "--results", "nowhere", "--ns", "1,x"]) == 2
    assert capsys.readouterr().err.startswith("error:")
