"""ICAART Fig. 9's benchmark (benchmarks/bench_defenses.py) under ``--keep``: a rerun of ``make demo`` prints the
stored timing of the same workload instead of timing it again, and any change of the workload times it anew."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_defenses  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--n", "4", "--batch", "4", "--repeat", "1", "--defenses", "lgs,median"]


def test_keep_prints_a_stored_timing_of_the_same_workload_and_times_any_other_anew(tmp_path, capsys):
    csv = tmp_path / "fig9.csv"
    bench_defenses.main([*TINY, "--csv", str(csv), "--keep"])  # nothing stored yet: timed
    first = csv.read_bytes()
    df = pd.read_csv(csv)
    assert list(df["defense"]) == ["lgs", "median"] and df["workload"].nunique() == 1 and (df["seconds"] > 0).all()
    assert "wrote" in capsys.readouterr().out

    bench_defenses.main([*TINY, "--csv", str(csv), "--keep"])  # the same workload, machine and code: kept
    out = capsys.readouterr().out
    assert f"kept {csv}" in out and "lgs" in out and "median" in out and "kept from" in out
    assert csv.read_bytes() == first

    bench_defenses.main([*TINY, "--lam", "3.0", "--csv", str(csv), "--keep"])  # another λ: timed, the key changes
    out = capsys.readouterr().out
    assert "wrote" in out and "kept" not in out
    assert pd.read_csv(csv)["workload"].iloc[0] != df["workload"].iloc[0]

    bench_defenses.main([*TINY, "--lam", "3.0", "--csv", str(csv)])  # no --keep: always timed, the same key
    out = capsys.readouterr().out
    assert "wrote" in out and "kept" not in out


def test_the_workload_key_follows_the_code_the_arguments_and_the_machine(monkeypatch, tmp_path):
    args = bench_defenses.argparse.Namespace(preset="demo-fmnist", n=4, batch=4, lam=2.3, repeat=1, defenses="lgs")
    device = bench_defenses.torch.device("cpu")
    key = bench_defenses.workload_key(args, device)
    assert bench_defenses.workload_key(args, device) == key
    assert bench_defenses.workload_key(bench_defenses.argparse.Namespace(**{**vars(args), "n": 5}), device) != key
    monkeypatch.setattr(bench_defenses, "source_digest", lambda: "another tree")
    assert bench_defenses.workload_key(args, device) != key
    monkeypatch.undo()
    monkeypatch.setattr(bench_defenses, "cpu_name", lambda: "another CPU")
    assert bench_defenses.workload_key(args, device) != key

    # a CSV from before the key (no workload column), or of another workload, is never kept
    old = tmp_path / "old.csv"
    pd.DataFrame({"defense": ["lgs"], "seconds": [0.1]}).to_csv(old, index=False)
    assert bench_defenses.kept_timing(str(old), key) is None
    pd.DataFrame({"defense": ["lgs"], "seconds": [0.1], "workload": ["other"]}).to_csv(old, index=False)
    assert bench_defenses.kept_timing(str(old), key) is None
    assert bench_defenses.kept_timing(str(tmp_path / "absent.csv"), key) is None
