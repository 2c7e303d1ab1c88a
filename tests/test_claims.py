"""Claims and their verdicts (patchbench.claims): the paired tests against statsmodels, scipy and independent
formulas on the same counts; each verdict kind on synthetic cells written through the store (holds,
contradicted, inconclusive, not computed, unreliable from an audit flag) and a Holm-corrected borderline case;
the shipped papers' declarations; `patchbench claims` and the report's opening table."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, tiny_preset

from patchbench.claims import Cells, Claim, largest_size
from patchbench.reporting.claim_checks import claim_verdict
from patchbench.claims.pairs import pair_cells, side_cells
from patchbench.claims.render import note
from patchbench.claims.spec import PAIR_BY
from patchbench.claims.stats import bootstrap_effects, holm, mcnemar_exact, paired_test
from patchbench.claims.rules import CONTRADICTED, HOLDS, INCONCLUSIVE, NOT_COMPUTED, UNRELIABLE, judge
from patchbench.errors import PatchbenchError
from patchbench.papers import PAPERS
from patchbench.presets import load_preset
from patchbench.store.results import ResultStore, run_id

N = 400  # evaluation images of the synthetic cells


# ------------------------------------------------------------------------------------------------
# the tests themselves, against references


def test_exact_mcnemar_equals_statsmodels_and_the_binomial_sum_on_the_same_counts():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(1)
    for n, pa, pb in ((300, 0.6, 0.5), (80, 0.3, 0.35), (50, 0.9, 0.9)):
        a, b = rng.random(n) < pa, rng.random(n) < pb
        n10, n01, p2, p_gt, p_lt = mcnemar_exact(a, b)
        table = pd.crosstab(pd.Categorical(a, [True, False]), pd.Categorical(b, [True, False]), dropna=False).to_numpy()
        assert (n10, n01) == (table[0, 1], table[1, 0])
        assert p2 == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
        tail = lambda k, m: sum(math.comb(m, j) for j in range(k, m + 1)) / 2 ** m  # noqa: E731  P(X >= k), X ~ Bin(m, 1/2)
        assert p_gt == pytest.approx(tail(n10, n10 + n01), rel=1e-9)
        assert p_lt == pytest.approx(tail(n01, n10 + n01), rel=1e-9)
    assert mcnemar_exact([True, False], [True, False])[2:] == (1.0, 1.0, 1.0)  # no discordant pair


def test_holm_equals_statsmodels_and_the_closed_bonferroni_tests(monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests

    # multipletests runs a full garbage collection on every call (0.1-0.3 s each in a test process holding models);
    # it frees memory and changes no returned value
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(2)
    for m in (1, 2, 3, 5, 6):
        for p in (rng.random(m) * 0.1, rng.random(m), np.r_[[0.01] * (m - 1), 0.04][:m]):
            ours = holm(p)
            assert ours == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)
            # Holm = the closed testing procedure with Bonferroni tests of every intersection hypothesis: the
            # adjusted p of H_i is the largest, over the sets S containing i, of min(1, |S| · min_{j in S} p_j)
            closed = [max(min(1.0, len(s) * min(p[j] for j in s)) for k in range(1, m + 1)
                          for s in itertools.combinations(range(m), k) if i in s) for i in range(m)]
            assert ours == pytest.approx(closed, abs=1e-12)


def test_the_bootstrap_is_seeded_and_its_spread_is_the_standard_error():
    rng = np.random.default_rng(3)
    d = rng.normal(0.2, 1.0, size=(1, 900))
    first, again = bootstrap_effects(d, 4000, seed=7), bootstrap_effects(d, 4000, seed=7)
    assert (first == again).all() and not (first == bootstrap_effects(d, 4000, seed=8)).all()
    assert first.mean() == pytest.approx(d.mean(), abs=0.01)
    assert first.std() == pytest.approx(d.std() / math.sqrt(d.size), rel=0.08)  # the mean's standard error
    # replicates: a shift shared by all images of a replicate widens the interval (seed-to-seed spread)
    shifted = d[0][None, :600] + np.array([[-0.5], [0.0], [0.5]])
    wide = bootstrap_effects(shifted, 4000, seed=7).std()
    assert wide > 3 * bootstrap_effects(shifted - shifted.mean(1, keepdims=True), 4000, seed=7).std()


def test_paired_test_picks_mcnemar_for_one_pair_and_the_bootstrap_otherwise():
    rng = np.random.default_rng(4)
    a, b = (rng.random(N) < 0.7).astype(float), (rng.random(N) < 0.6).astype(float)
    one = paired_test(a[None], b[None], True, "greater", 0.0, seed=1)
    assert one.test == "exact McNemar" and one.discordant == mcnemar_exact(a > 0, b > 0)[:2]
    assert one.p == pytest.approx(mcnemar_exact(a > 0, b > 0)[2]) and one.effect == pytest.approx(a.mean() - b.mean())
    assert one.low < one.effect < one.high
    margin = paired_test(a[None], b[None], True, "greater", -0.05, seed=1)
    assert margin.test == "paired bootstrap" and margin.p_hold < one.p_hold  # easier to clear −5 pp than 0
    many = paired_test(np.stack([a, a]), np.stack([b, 1 - b]), True, "less", 0.0, seed=1)
    assert many.test == "paired bootstrap" and many.n_replicates == 2


# ------------------------------------------------------------------------------------------------
# synthetic cells through the store


def write_cell(store: ResultStore, correct: np.ndarray, *, preset: str, created: int, labels: np.ndarray, **fields) -> dict:
    row = {"dataset": "fashion-mnist", "split": "test", "eval_n": len(correct), "eval_seed": 0, "image_size": 32,
           "model": "small_vgg", "model_id": "m1", "attack": "none", "defense": "none", "condition": "clean",
           "preset": preset, **fields}
    row["run_id"] = run_id(row)
    k = int(correct.sum())
    row.update(n=len(correct), correct=k, accuracy=k / len(correct), created=f"2026-01-01T00:{created:02d}:00+00:00")
    pred = np.where(correct, labels, (labels + 1) % 10)
    store.write(row, pd.DataFrame({"index": np.arange(1000, 1000 + len(correct)), "label": labels, "pred": pred}))
    return row


def patch_cells(store, preset, size, defense, lam, accuracy, rng, labels, created, seeds=(0, 1, 2), base=None):
    """One attacked cell per patch seed; ``base`` (per seed) makes the outcomes near copies of another side's."""
    rows = []
    for s in seeds:
        correct = rng.random(N) < accuracy if base is None else base[s].copy()
        rows.append(write_cell(store, correct, preset=preset, created=created, labels=labels, attack="lavan",
                               condition="attacked", patch_px=size, patch_id=f"patch{s}", placement="top-right+2",
                               attack_seed=s, target=0, defense=defense, lam=lam))
    return rows


@pytest.fixture
def synthetic(tmp_path):
    """A tiny preset and its cells: clean, LaVAN at the preset's largest size through no defense (about 20 %
    correct), LGS (60 %), SLGS (LGS with 2 images of 400 flipped each way), JPEG (70 %, flagged by the audit)."""
    path = tiny_preset(tmp_path / "tiny.yaml")
    preset = load_preset(str(path))
    size = max(preset.attacks[0].sizes)
    store = ResultStore(tmp_path / "results")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, N)
    write_cell(store, rng.random(N) < 0.9, preset=preset.name, created=0, labels=labels)
    patch_cells(store, preset.name, size, "none", None, 0.2, rng, labels, 1)
    lgs = patch_cells(store, preset.name, size, "lgs", 2.3, 0.6, rng, labels, 2)
    near = {}
    for s, row in enumerate(lgs):
        c = store.load_predictions(row["run_id"]).eval("pred == label").to_numpy().copy()
        c[np.flatnonzero(c)[:2]], c[np.flatnonzero(~c)[:2]] = False, True
        near[s] = c
    patch_cells(store, preset.name, size, "slgs", 2.3, None, rng, labels, 3, base=near)
    jpeg = patch_cells(store, preset.name, size, "jpeg", 2.3, 0.7, rng, labels, 4)
    flags = pd.DataFrame({"run_id": [r["run_id"] for r in jpeg], "audit_transfer_failure": [True, False, False],
                          "audit_unstable_predictions": [False] * 3})
    store.write_audit(preset.name, flags)
    return str(path), store


def lavan(defense, lam=None):
    where = {"condition": "attacked", "attack": "lavan", "patch_px": largest_size("lavan"), "defense": defense}
    return Cells(f"{defense}, LaVAN (largest)", {**where, **({"lam": lam} if lam is not None else {})})


def verdicts_of(claims, store) -> list:
    cells = store.load_cells()
    return judge([claim_verdict("toy", c, "demo", cells, store.load_predictions) for c in claims])


def test_each_verdict_kind_on_synthetic_cells(synthetic):
    path, store = synthetic
    claims = [Claim("lgs-beats-none", "LGS above no defense", "T1", "60 vs 20", lavan("lgs", 2.3), lavan("none"), {"demo": path}),
              Claim("none-beats-lgs", "no defense above LGS", "T1", "-", lavan("none"), lavan("lgs", 2.3), {"demo": path}),
              Claim("slgs-beats-lgs", "SLGS above LGS", "T1", "-", lavan("slgs", 2.3), lavan("lgs", 2.3), {"demo": path}),
              Claim("wlgs-beats-none", "WLGS above none", "T1", "-", lavan("wlgs", 2.3), lavan("none"), {"demo": path}),
              Claim("jpeg-beats-none", "JPEG above none", "T1", "-", lavan("jpeg", 2.3), lavan("none"), {"demo": path}),
              Claim("paper-only", "only at paper scale", "T1", "-", lavan("lgs", 2.3), lavan("none"), {"paper": path}),
              Claim("vague", "a side without its defense", "T1", "-", Cells("LaVAN", {"attack": "lavan"}), lavan("none"),
                    {"demo": path}),
              Claim("clean-breaks", "LaVAN lowers accuracy", "T1", "-", lavan("none"),
                    Cells("clean", {"condition": "clean", "defense": "none"}), {"demo": path}, direction="less")]
    v = {x.claim.id: x for x in verdicts_of(claims, store)}
    assert v["lgs-beats-none"].verdict == HOLDS and v["none-beats-lgs"].verdict == CONTRADICTED
    r = v["lgs-beats-none"].result
    assert r.test == "paired bootstrap" and (r.n_images, r.n_replicates) == (N, 3)  # three seeds, paired by patch
    assert r.effect == pytest.approx(r.mean_a - r.mean_b) and 0.3 < r.effect < 0.5 and r.low < r.effect < r.high
    assert v["none-beats-lgs"].result.effect == pytest.approx(-r.effect)
    slgs = v["slgs-beats-lgs"]
    assert slgs.verdict == INCONCLUSIVE and slgs.result.effect == 0 and slgs.p_holm == 1.0
    assert v["wlgs-beats-none"].verdict == NOT_COMPUTED and v["wlgs-beats-none"].result is None
    assert "no stored cell of tiny-fmnist for wlgs, LaVAN (largest)" in v["wlgs-beats-none"].why
    assert f"`patchbench sweep --preset {path}` computes them" in v["wlgs-beats-none"].why
    assert v["paper-only"].verdict == NOT_COMPUTED and "names no demo-scale preset" in v["paper-only"].why
    assert v["vague"].verdict == NOT_COMPUTED and "cells that differ in defense, lam for one" in v["vague"].why
    jpeg = v["jpeg-beats-none"]
    assert jpeg.verdict == UNRELIABLE and jpeg.test_verdict == HOLDS and jpeg.audit == ("transfer failure (TF)",)
    assert "transfer failure (TF)" in jpeg.why and jpeg.audited and v["lgs-beats-none"].audited is False
    clean = v["clean-breaks"]  # a single clean cell paired with each of the three seeds' attacked cells
    assert clean.verdict == HOLDS and clean.result.n_replicates == 3 and len(clean.cells) == 4
    # Holm over the five computed claims: each adjusted p is at least its own and at most 5 times it
    tested = [x for x in v.values() if x.result is not None]
    assert len(tested) == 5 and all(x.result.p <= x.p_holm <= min(1, 5 * x.result.p) for x in tested)


def test_a_holm_corrected_borderline_claim_holds_alone_and_not_among_two(tmp_path):
    """Exact McNemar on one pair of cells with 20 vs 8 discordant images: p = 0.036 (holds alone); beside a
    second claim with p = 0.043, Holm multiplies the smaller by 2: 0.071, and neither holds."""
    path = str(tiny_preset(tmp_path / "tiny.yaml"))
    name = load_preset(path).name
    store = ResultStore(tmp_path / "results")
    labels = np.zeros(200, int)
    claims = []
    for i, (n10, n01) in enumerate(((20, 8), (21, 9))):
        a = np.r_[np.ones(n10), np.zeros(n01), np.ones(100), np.zeros(200 - 100 - n10 - n01)].astype(bool)
        b = np.r_[np.zeros(n10), np.ones(n01), np.ones(100), np.zeros(200 - 100 - n10 - n01)].astype(bool)
        for side, correct in (("a", a), ("b", b)):
            write_cell(store, correct, preset=name, created=i, labels=labels, defense=f"d{i}{side}")
        claims.append(Claim(f"borderline{i}", "a above b", "T", "-", Cells("a", {"defense": f"d{i}a"}),
                            Cells("b", {"defense": f"d{i}b"}), {"demo": path}))
    alone = verdicts_of(claims[:1], store)[0]
    assert alone.result.test == "exact McNemar" and alone.result.discordant == (20, 8)
    assert alone.result.p == pytest.approx(0.0357, abs=1e-4) and alone.p_holm == alone.result.p and alone.verdict == HOLDS
    both = verdicts_of(claims, store)
    assert [round(x.result.p, 4) for x in both] == [0.0357, 0.0428]
    assert [round(x.p_holm, 4) for x in both] == [0.0714, 0.0714] and {x.verdict for x in both} == {INCONCLUSIVE}


def test_loss_and_certified_outcomes_and_a_json_field_filter(tmp_path):
    """A loss claim reads the per-image losses of the predictions (bootstrap); a certified claim the certificate
    of a PatchCleanser cell whose patch side is a field of its defense_params; without a certificate: not computed."""
    path = str(tiny_preset(tmp_path / "tiny.yaml"))
    name = load_preset(path).name
    store = ResultStore(tmp_path / "results")
    rng = np.random.default_rng(5)
    idx, labels = np.arange(300), rng.integers(0, 10, 300)
    for training, shift in (("raw", 0.0), ("lat", -0.2)):
        loss = rng.gamma(2.0, 0.3, 300) + shift * (rng.random(300) < 0.8)
        row = {"dataset": "fashion-mnist", "split": "test", "eval_n": 300, "eval_seed": 0, "image_size": 32, "model": "lenet",
               "model_id": training, "attack": "none", "defense": "none", "condition": "clean", "preset": name,
               "training": training, "created": "2026-01-01T00:00:00+00:00", "n": 300, "correct": 0, "accuracy": 0.0}
        row["run_id"] = run_id({**row, "model_id": training})
        store.write(row, pd.DataFrame({"index": idx, "label": labels, "pred": labels, "loss": loss.astype("float32")}))
    pc = {"dataset": "fashion-mnist", "split": "test", "eval_n": 300, "eval_seed": 0, "image_size": 32, "model": "lenet",
          "model_id": "raw", "attack": "none", "defense": "patchcleanser", "condition": "clean", "preset": name,
          "defense_params": json.dumps({"patch_px": 6, "k": 4}), "created": "2026-01-01T00:01:00+00:00", "n": 300}
    pc["run_id"] = run_id(pc)
    store.write({**pc, "correct": 270, "accuracy": 0.9}, pd.DataFrame(
        {"index": idx, "label": labels, "pred": np.where(np.arange(300) < 270, labels, labels + 1),
         "certified": np.arange(300) < 120}))
    lat = Claim("lat", "LAT lowers the loss", "Fig. 2", "39.6 vs 41.4", Cells("lat", {"training": "lat"}, "loss"),
                Cells("raw", {"training": "raw"}, "loss"), {"demo": path}, direction="less")
    near = Claim("near", "certified near clean", "T2", "62.1 vs 83.9",
                 Cells("certified", {"defense": "patchcleanser", "defense_params.patch_px": 6}, "certified"),
                 Cells("clean", {"defense": "patchcleanser", "defense_params.patch_px": 6}), {"demo": path}, margin=0.25)
    none = Claim("none", "no certificate", "T2", "-", Cells("certified", {"training": "lat"}, "certified"),
                 Cells("clean", {"training": "raw"}), {"demo": path})
    v = {x.claim.id: x for x in verdicts_of([lat, near, none], store)}
    assert v["lat"].verdict == HOLDS and v["lat"].result.test == "paired bootstrap" and v["lat"].result.effect < 0
    assert v["near"].result.effect == pytest.approx(-0.5) and v["near"].verdict == CONTRADICTED  # 40 vs 90 %: 50 pp > 25
    assert v["none"].verdict == NOT_COMPUTED and "hold no certificate" in v["none"].why


def test_training_seeds_are_replicates_paired_by_seed_and_a_retrained_model_replaces_its_seed():
    """Evasion presets with several training seeds per objective (``train_seed``): each side keeps the newest
    model per seed, and the two objectives' models pair seed by seed (different models, the same images)."""
    rows = [(tr, seed, f"{tr}-{seed}", t) for t, (tr, seed) in enumerate(itertools.product(("madry+aad", "madry"), (0, 1, 2)))]
    rows.append(("madry", 0, "madry-0-old", -1))  # an older model of seed 0, since retrained
    rows.append(("raw", None, "raw", 0))
    df = pd.DataFrame([{"training": tr, "train_seed": seed, "model_id": mid, "run_id": f"r-{mid}", "created": f"{t + 10:03d}",
                        "attack_label": "CW100", "patch_id": None, "placement": None} for tr, seed, mid, t in rows])
    preset = type("P", (), {"name": "p"})()
    a = side_cells(df, Cells("a", {"training": "madry+aad"}), preset)
    b = side_cells(df, Cells("b", {"training": "madry"}), preset)
    assert sorted(b["model_id"]) == ["madry-0", "madry-1", "madry-2"]
    pairs = pair_cells(a, b, PAIR_BY)
    assert sorted((ra["model_id"], rb["model_id"]) for ra, rb in pairs) == [(f"madry+aad-{s}", f"madry-{s}") for s in range(3)]
    raw = side_cells(df, Cells("raw", {"training": "raw"}), preset)  # one model: paired with each seed's
    assert len(pair_cells(a, raw, PAIR_BY)) == 3


def test_pairs_come_in_the_order_of_their_values_whatever_order_the_cells_were_created_in():
    """The bootstrap resamples replicates by position: a results directory filled in another order (seeds added later,
    a rerun from empty) must give the same pairs in the same order, so the same interval."""
    def cells(created):
        return pd.DataFrame([{"training": tr, "train_seed": s, "model_id": f"{tr}-{s}", "run_id": f"r-{tr}-{s}",
                              "created": f"{created[s]:03d}", "attack_label": "CW100", "patch_id": None, "placement": None}
                             for tr in ("madry+aad", "madry") for s in range(3)])

    preset = type("P", (), {"name": "p"})()
    orders = []
    for created in ((0, 1, 2), (2, 0, 1)):
        df = cells(created)
        a, b = (side_cells(df, Cells(x, {"training": x}), preset) for x in ("madry+aad", "madry"))
        orders.append([(ra["run_id"], rb["run_id"]) for ra, rb in pair_cells(a, b, PAIR_BY)])
    assert orders[0] == orders[1] == [(f"r-madry+aad-{s}", f"r-madry-{s}") for s in range(3)]


def test_two_attack_columns_of_one_objective_pair_by_training_seed():
    """TOMM's longer-pgd-stronger compares two attack columns of one objective's models: paired by the default keys
    (which include the attack's label) no cell of one side matches one of the other; the shipped claim pairs by
    training seed, each seed's PGD-100 cell with the same model's PGD-10 cell."""
    df = pd.DataFrame([{"training": "madry", "train_seed": s, "model_id": f"m{s}", "run_id": f"r{s}-{k}", "created": f"{s:03d}",
                        "attack_label": k, "patch_id": None, "placement": None} for s in range(3) for k in ("PGD-100", "PGD-10")])
    preset = type("P", (), {"name": "p"})()
    a = side_cells(df, Cells("a", {"training": "madry", "attack_label": "PGD-100"}), preset)
    b = side_cells(df, Cells("b", {"training": "madry", "attack_label": "PGD-10"}), preset)
    with pytest.raises(PatchbenchError, match="no cell of one side has the patch_id, placement, attack_label, train_seed"):
        pair_cells(a, b, PAIR_BY)
    claim = next(c for c in PAPERS["tomm2022"].claims if c.id == "longer-pgd-stronger")
    pairs = pair_cells(a, b, claim.pair_by)
    assert sorted((ra["run_id"], rb["run_id"]) for ra, rb in pairs) == [(f"r{s}-PGD-100", f"r{s}-PGD-10") for s in range(3)]


# ------------------------------------------------------------------------------------------------
# the shipped papers, the command and the report


def test_every_shipped_paper_declares_at_least_four_claims_that_resolve_on_its_presets():
    for name in ("icaart2022", "tomm2022", "bmvc2023", "advml2019", "patchcleanser2022"):
        paper = PAPERS[name]
        assert len(paper.claims) >= 4, name
        assert "demo" in {s for c in paper.claims for s in c.presets}, name
        for claim in paper.claims:
            assert claim.source and claim.statement and claim.paper_numbers and any(ch.isdigit() for ch in claim.paper_numbers)
            for scale, preset_name in claim.presets.items():
                preset = load_preset(preset_name)
                for side in (claim.a, claim.b):
                    for column, value in side.where.items():
                        if callable(value) and not value.text.startswith("the last"):  # a pick decided by the preset alone
                            assert value(preset, pd.DataFrame()) is not None, (name, claim.id, scale, column)
    with pytest.raises(PatchbenchError, match="direction must be greater or less"):
        Claim("x", "s", "T", "1", Cells("a"), Cells("b"), {"demo": "demo-fmnist"}, direction="up")
    with pytest.raises(PatchbenchError, match="claim ids must be unique"):
        from patchbench.paper import Paper

        Paper("p", "t", __name__, {}, claims=(PAPERS["tomm2022"].claims[0],) * 2)


def test_the_command_lists_every_claim_of_every_paper_with_a_verdict(synthetic, tmp_path):
    _, store = synthetic
    data = json.loads(run_cli("claims", "--results", store.root, "--format", "json").stdout)
    assert data["scale"] == "demo"
    declared = [(p.name, c.id) for p in PAPERS.values() for c in p.claims]
    assert [(c["paper"], c["claim"]) for c in data["claims"]] == declared
    assert {c["verdict"] for c in data["claims"]} == {NOT_COMPUTED}  # no cell of any shipped preset here
    assert all("patchbench reproduce" in c["why"] or "names no demo-scale" in c["why"] for c in data["claims"])
    assert data["tally"][-1].startswith(f"all papers: 0 of {len(declared)} claims hold")
    md = run_cli("claims", "tomm2022", "--results", store.root, "--format", "markdown").stdout
    assert re.search(r"\| tomm2022 +\| aad-beats-madry-cw +\|", md) and "icaart2022" not in md.split("\n\n")[1]
    bad = run_cli("claims", "--results", store.root, "--format", "csv", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown format 'csv'")
    bad = run_cli("claims", "nope", "--results", store.root, check=False)
    assert bad.returncode == 2 and "unknown paper 'nope'" in bad.stderr
    bad = run_cli("claims", "--results", tmp_path / "empty", check=False)
    assert bad.returncode == 2 and "no stored cells under" in bad.stderr


def test_a_claim_that_does_not_hold_names_its_controlled_experiment_or_says_it_has_none(synthetic):
    path, store = synthetic
    why = "scale: at 64 px the saliency is speckle (docs/OPERATING_POINTS.md, experiment 1)"
    claims = [Claim("none-beats-lgs", "no defense above LGS", "T1", "-", lavan("none"), lavan("lgs", 2.3), {"demo": path},
                    explained={"demo": why}),
              Claim("slgs-beats-lgs", "SLGS above LGS", "T1", "-", lavan("slgs", 2.3), lavan("lgs", 2.3), {"demo": path}),
              Claim("lgs-beats-none", "LGS above no defense", "T1", "-", lavan("lgs", 2.3), lavan("none"), {"demo": path},
                    explained={"demo": why})]
    v = {x.claim.id: x for x in verdicts_of(claims, store)}
    assert v["none-beats-lgs"].verdict == CONTRADICTED and note(v["none-beats-lgs"]).endswith(f"; why not: {why}")
    assert v["slgs-beats-lgs"].verdict == INCONCLUSIVE and note(v["slgs-beats-lgs"]).endswith("why not: no controlled experiment yet")
    assert v["lgs-beats-none"].verdict == HOLDS and "why not" not in note(v["lgs-beats-none"])  # shown only when it fails
    with pytest.raises(PatchbenchError, match="explained must map a scale of its presets"):
        Claim("x", "s", "T1", "-", lavan("lgs", 2.3), lavan("none"), {"demo": path}, explained={"paper": why})
