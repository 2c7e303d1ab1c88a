"""`patchbench reproduce --only PRESET`: run some of a paper's presets (``make demo`` runs the ICAART
demo's main model inside its time budget); a name that is none of them stops before any work."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

import patchbench.runner.reproduce as rep


def test_only_an_unknown_preset_is_one_error_line_and_nothing_written(tmp_path):
    results = tmp_path / "results"
    r = run_cli("reproduce", "icaart2022", "--only", "demo-tomm-fmnist", "--results", results, check=False)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "demo-tomm-fmnist" in lines[0] and "demo-fmnist, demo-fmnist-inception" in lines[0]
    assert not results.exists()


def test_only_runs_just_the_named_presets_and_reports_them(tmp_path, monkeypatch):
    ran, reported = [], []
    monkeypatch.setattr(rep, "preflight", lambda plan, *a, **k: None)
    monkeypatch.setattr(rep, "run_preset", lambda p, *a, **k: ran.append(p.name))
    monkeypatch.setattr(rep, "report_paper", lambda name, presets, *a, **k: reported.append((name, [p.name for p in presets])) or [])
    monkeypatch.setattr(rep, "record", lambda out, *a, **k: Path(out) / "provenance.json")
    rep.reproduce(["icaart2022", "tomm2022"], "demo", tmp_path / "results", tmp_path / "out", progress=False,
                  print_tables=False, only=["demo-fmnist-inception"])
    assert ran == ["demo-fmnist-inception"]
    assert reported == [("icaart2022", ["demo-fmnist-inception"])]  # TOMM, left with no preset, is not run or reported

    ran.clear(), reported.clear()
    rep.reproduce("icaart2022", "demo", tmp_path / "results", tmp_path / "out", progress=False, print_tables=False)
    assert ran == ["demo-fmnist", "demo-fmnist-inception"]  # without --only: every preset of the scale
