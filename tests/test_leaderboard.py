"""`patchbench leaderboard` (patchbench.reporting.leaderboard) on synthetic cells whose answer is known:
the strongest attack per defended model within the threat model, clean and certified accuracy, the
audit's flags, JSON that merges across machines, and the report's section."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from patchbench.errors import PatchbenchError
from patchbench.reporting.leaderboard import entries, frame, merge, read_board, to_json
from patchbench.store.results import ResultStore, wilson_ci

N = 1000


def cell(i, model_id, defense, attack, acc, lam=None, px=None, **kw):
    lo, hi = wilson_ci(int(acc * N), N)
    params = {"patchcleanser": '{"k": 4, "patch_px": 14}', "none": "{}"}.get(defense, '{"window": 5}')
    return {"run_id": f"r{i:03d}", "preset": "p", "dataset": "fashion-mnist", "split": "test", "eval_n": N, "eval_seed": 0,
            "image_size": 64, "model": "small_vgg" if model_id == "a" else "lenet", "model_id": model_id,
            "defense": defense, "defense_params": params, "lam": lam, "attack": attack, "patch_px": px,
            "patch_area_pct": None if px is None else 100 * px * px / 64 ** 2,
            "condition": "clean" if attack == "none" else "attacked", "n": N, "correct": int(acc * N), "accuracy": acc,
            "ci_low": lo, "ci_high": hi, "created": f"2026-12-06T00:00:{i:02d}+00:00", "cpu": "cpu-x", "threads": 2,
            "torch": "2.14", "device": "cpu", "git_sha": "abc", "version": "0.1", **kw}


def synthetic_cells() -> pd.DataFrame:
    rows = [
        cell(1, "a", "none", "none", 0.90),
        cell(2, "a", "none", "lavan", 0.70, px=6, attack_seed=0),
        cell(3, "a", "none", "lavan", 0.60, px=6, attack_seed=1, audit_transfer_failure=True),
        cell(4, "a", "none", "adversarial_patch", 0.50, px=14, attack_seed=0),  # 4.8 % of the image
        cell(5, "a", "none", "lavan", 0.00, px=45, attack_seed=0),  # 49 %: outside the 25 % threat model
        cell(6, "a", "lgs", "none", 0.85, lam=2.3),
        cell(7, "a", "lgs", "lavan", 0.80, lam=2.3, px=6, attack_seed=0, audit_transfer_failure=False),
        cell(8, "a", "lgs", "lavan-adaptive", 0.55, lam=2.3, px=10, attack_step=20, attack_through="lgs",
             audit_silent_success=True),
        cell(9, "a", "lgs", "lavan-adaptive", 0.60, lam=2.3, px=10, attack_step=100, attack_through="lgs"),
        cell(10, "a", "patchcleanser", "none", 0.70, n_certified=400, certified_accuracy=0.40),
        cell(11, "a", "patchcleanser", "lavan", 0.69, px=6, attack_seed=0),
        cell(12, "b", "none", "none", 0.98, training="madry"),
        cell(13, "b", "none", "pgd", 0.90, training="madry", attack_params='{"eps": 0.3, "steps": 40}'),
        cell(14, "b", "none", "fgsm", 0.95, training="madry", attack_params='{"eps": 0.3}'),
        cell(15, "b", "none", "pgd", 0.40, training="madry", attack_params='{"eps": 0.5, "steps": 40}'),
        cell(16, "b", "none", "npixel", 0.70, training="madry", attack_params='{"eps": 1.0, "pixels": 4}'),
        cell(17, "b", "none", "single_pixel", 0.80, training="madry", attack_params='{"eps": 1.0, "max_pixels": 1000}'),
        cell(18, "b", "none", "npixel", 0.85, training="madry", attack_params='{"eps": 1.0}'),  # its default: 1 pixel
    ]
    return pd.DataFrame(rows)


def by(board, model_id, defense, threat_start="patch"):
    (e,) = [e for e in board if e["model_id"] == model_id and e["defense"] == defense and e["threat"].startswith(threat_start)]
    return e


def test_each_defended_model_gets_its_strongest_attack_within_the_threat_model():
    board = entries(synthetic_cells())
    assert len(board) == 7  # a × {none, lgs, patchcleanser} (patches ≤ 25 %), b × {ε 0.3, ε 0.5, 1 px, 4 px}
    none = by(board, "a", "none")
    assert none["threat"] == "patch ≤ 25 % of the image" and none["clean_accuracy"] == 0.90
    assert none["largest_patch_pct"] == round(100 * 14 ** 2 / 64 ** 2, 2) and by(board, "b", "none", "linf ε=0.3")["largest_patch_pct"] is None
    assert none["robust_accuracy"] == 0.50 and none["strongest_attack"]["attack"] == "adversarial_patch"
    assert none["strongest_attack"]["patch_px"] == 14 and none["attacks"] == ["adversarial_patch", "lavan"]
    assert none["audit"] == {"audited": 1, "flagged": 1} and none["strongest_attack"]["audit"] == []
    lgs = by(board, "a", "lgs")
    s = lgs["strongest_attack"]
    assert lgs["robust_accuracy"] == 0.55 and (s["attack"], s["step"], s["through"]) == ("lavan-adaptive", 20, "lgs")
    assert s["audit"] == ["SS"] and lgs["lam"] == 2.3 and lgs["defense_params"] == {"window": 5}
    pc = by(board, "a", "patchcleanser")
    assert (pc["clean_accuracy"], pc["certified_accuracy"], pc["certified_patch_px"], pc["robust_accuracy"]) == (0.7, 0.4, 14, 0.69)
    madry = by(board, "b", "none", "linf ε=0.3")
    assert madry["robust_accuracy"] == 0.90 and madry["training"] == "madry" and madry["clean_accuracy"] == 0.98
    assert by(board, "b", "none", "linf ε=0.5")["robust_accuracy"] == 0.40
    assert by(board, "b", "none", "l0 4 px")["robust_accuracy"] == 0.70
    one = by(board, "b", "none", "l0 1 px")
    assert one["robust_accuracy"] == 0.80 and one["attacks"] == ["npixel", "single_pixel"]
    assert len({e["key"] for e in board}) == 7
    # a wider threat model takes the half-image patch in
    assert by(entries(synthetic_cells(), max_area=50), "a", "none")["robust_accuracy"] == 0.0
    assert by(entries(synthetic_cells(), max_area=2), "a", "none")["robust_accuracy"] == 0.60  # 6 px only (0.9 %)
    table = frame(board).set_index(["model", "defense", "threat"])
    threat = "patch ≤ 25 % of the image (tried ≤ 4.79 %)"
    row = table.loc[("small_vgg", "none", threat)]
    assert row["robust"] == "50.0 [46.9, 53.1]" and row["strongest attack"] == "adversarial_patch 14px seed 0"
    assert table.loc[("small_vgg", "lgs λ=2.3", "patch ≤ 25 % of the image (tried ≤ 2.44 %)"), "strongest attack"] == \
        "lavan-adaptive 10px via lgs step 20"
    assert table.loc[("small_vgg", "patchcleanser (14 px)", "patch ≤ 25 % of the image (tried ≤ 0.88 %)"), "certified"] == "40.0"
    # within a model and threat, the most robust defense first
    assert list(frame(board)["defense"])[4:] == ["patchcleanser (14 px)", "lgs λ=2.3", "none"]


def test_boards_from_two_machines_merge_on_the_key():
    mine = entries(synthetic_cells())
    other_cells = synthetic_cells()
    other_cells["cpu"] = "cpu-y"
    other_cells.loc[other_cells["run_id"] == "r007", "accuracy"] = 0.30  # machine y found a stronger LaVAN through LGS
    theirs = entries(other_cells)
    merged = merge([mine, json.loads(to_json(theirs, 5.0))["entries"]])
    assert len(merged) == 7
    lgs = by(merged, "a", "lgs")
    assert lgs["robust_accuracy"] == 0.30 and lgs["strongest_attack"]["run_id"] == "r007"
    assert {p["cpu"] for p in lgs["provenance"]} == {"cpu-x", "cpu-y"} and lgs["attacked_cells"] == 6
    assert by(merged, "a", "none")["robust_accuracy"] == 0.50
    other_model = synthetic_cells().assign(model_id="c")  # other weights: other entries
    assert len(merge([mine, entries(other_model)])) == 14


def test_read_board_refuses_what_is_not_a_board(tmp_path):
    good = tmp_path / "b.json"
    good.write_text(to_json(entries(synthetic_cells()), 25.0))
    assert len(read_board(good)) == 7
    bad = tmp_path / "x.json"
    bad.write_text('{"entries": []}')
    with pytest.raises(PatchbenchError, match="not a patchbench leaderboard"):
        read_board(bad)
    with pytest.raises(PatchbenchError, match="cannot read"):
        read_board(tmp_path / "missing.json")


def test_cli_md_json_merge_and_errors(tmp_path):
    store = ResultStore(tmp_path / "res").ensure()
    ints = ("patch_px", "attack_seed", "attack_step", "n_certified")
    for row in synthetic_cells().to_dict("records"):
        row = {k: int(v) if k in ints else v for k, v in row.items()
               if not (isinstance(v, float) and np.isnan(v)) and not k.startswith("audit_")}
        store.write(row, pd.DataFrame({"index": [0], "label": [0], "pred": [0]}))
    md = run_cli("leaderboard", "--results", tmp_path / "res")
    assert md.stdout.startswith("**Leaderboard") and "adversarial_patch 14px" in md.stdout
    run_cli("leaderboard", "--results", tmp_path / "res", "--format", "json", "--out", tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["format"] == "patchbench-leaderboard/1" and len(data["entries"]) == 7
    both = run_cli("leaderboard", "--results", tmp_path / "res", "--format", "json", "--merge", tmp_path / "a.json")
    assert len(json.loads(both.stdout)["entries"]) == 7
    for args, says in ((["--format", "xml"], "md or json"), (["--max-area", "0"], "--max-area"),
                       (["--merge", tmp_path / "nope.json"], "cannot read")):
        r = run_cli("leaderboard", "--results", tmp_path / "res", *args, check=False)
        assert r.returncode == 2 and r.stderr.startswith("error:") and says in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("leaderboard", "--results", tmp_path / "empty", check=False)
    assert r.returncode == 2 and "not a directory" in r.stderr
