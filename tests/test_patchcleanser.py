"""PatchCleanser (patchbench/defenses/patchcleanser.py): the mask set covers every patch, the two
rounds decide as Algorithm 1 on models whose answers we control, and the certificate is sound
against an adaptive patch attack (and the same attack breaks a certificate made with masks too small)."""

import dataclasses
import itertools
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import cells, make_image_folder, run_cli, sets
from patchbench.defenses import DEFENSES, build_defense
from patchbench.defenses.base import CERTIFIED, OUT
from patchbench.defenses.patchcleanser import PatchCleanser, axis_starts, mask_set
from patchbench.errors import PatchbenchError
from patchbench.models.wrapper import Classifier


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- mask geometry ---------------------------------------------------------------------------


def test_axis_starts_follow_the_papers_formula():
    # the paper's ImageNet setting: 224 px, a 32 px patch (2 %), k = 6: stride 33, mask 64 px
    starts, m, s = axis_starts(224, 32, 6)
    assert (s, m) == (33, 64) and starts == [0, 33, 66, 99, 132, 160]  # the last clamped to n - m
    assert axis_starts(64, 6, 3) == ([0, 20, 39], 25, 20)
    assert axis_starts(10, 10, 4) == ([0], 10, 1)  # a patch as large as the image: one mask, all of it
    with pytest.raises(PatchbenchError, match="does not fit"):
        axis_starts(16, 17, 2)


@pytest.mark.parametrize("n,p,k", [(224, 32, 6), (64, 6, 3), (64, 14, 4), (28, 5, 2), (17, 4, 5), (32, 1, 3),
                                   (64, 10, 1), (40, 39, 3)])
def test_every_patch_position_is_inside_some_mask(n, p, k):
    keep = mask_set(n, n, p, k)
    covered = ~keep  # M×1×n×n: True where a mask hides the pixel
    starts, m, s = axis_starts(n, p, k)
    assert len(keep) == len(starts) ** 2 <= k * k
    assert int(covered[0].sum()) == m * m and all(t + m <= n for t in starts)
    gen = torch.Generator().manual_seed(n * 1000 + p * 10 + k)
    positions = torch.randint(0, n - p + 1, (500, 2), generator=gen).tolist()
    positions += [[0, 0], [n - p, n - p], [0, n - p], [n - p, 0]]
    for r, c in positions:
        inside = covered[:, 0, r:r + p, c:c + p].flatten(1).all(1)
        assert inside.any(), f"a {p} px patch at ({r}, {c}) is not inside any mask"
    # exhaustively along one axis (the 2-D set is the product of the axes)
    for a in range(n - p + 1):
        assert any(t <= a and a + p <= t + m for t in starts)


def test_rectangular_images_get_masks_per_axis():
    keep = mask_set(20, 40, 5, 3)
    rows, _, _ = axis_starts(20, 5, 3)
    cols, _, _ = axis_starts(40, 5, 3)
    assert keep.shape == (len(rows) * len(cols), 1, 20, 40)


# ---- the two rounds on models whose answers we control ---------------------------------------


class Rule(nn.Module):
    """Logits from which pixels are visible: class ``rule(visible)`` with visible = (x != 0.5) —
    the defense fills masked pixels with 0.5 (``fill=0.5``) and the images hold no 0.5."""

    def __init__(self, rule, classes=4):
        super().__init__()
        self.rule, self.classes = rule, classes
        self.mean = torch.tensor([0.5]).view(1, 1, 1, 1)

    def forward(self, x):
        label = self.rule(x[:, 0] != 0.5)
        return torch.nn.functional.one_hot(label, self.classes).float() * 10


def visible_any(vis, r0, r1, c0, c1):
    return vis[:, r0:r1, c0:c1].flatten(1).any(1)


def run(rule, n=16, p=3, k=3, batch=2):
    d = PatchCleanser(patch_px=p, k=k, fill=0.5)
    x = torch.ones(batch, 1, n, n)
    model = Rule(rule)
    maps = d.maps(x, model)
    assert torch.equal(model(maps[OUT]).argmax(1), maps["pred"])  # the engine's forward gives the prediction
    return maps


def test_case_1_unanimous_agreement_is_certified():
    maps = run(lambda vis: torch.full((len(vis),), 3))
    assert maps["pred"].tolist() == [3, 3] and maps["case"].tolist() == [1, 1] and maps[CERTIFIED].tolist() == [3, 3]


def test_case_2_the_disagreer_that_survives_the_second_round_wins():
    # a "patch" at rows/cols 6..8: the model says 1 while any of it is visible, else the true class 0
    maps = run(lambda vis: torch.where(visible_any(vis, 6, 9, 6, 9), 1, 0))
    assert maps["pred"].tolist() == [0, 0] and maps["case"].tolist() == [2, 2]
    assert maps[CERTIFIED].tolist() == [-1, -1]  # not unanimous: no certificate
    assert (maps[OUT][:, 0, 6:9, 6:9] == 0.5).all()  # the winning disagreer mask hides the patch


def test_case_3_a_disagreer_that_meets_disagreement_is_dropped():
    # 1 only when region Q (rows 6..8, cols 0..2) is hidden and region R (rows 13..15, cols 13..15) visible:
    # the masks covering Q disagree, and their second round with a mask covering R says 0
    def rule(vis):
        return torch.where(~visible_any(vis, 6, 9, 0, 3) & visible_any(vis, 13, 16, 13, 16), 1, 0)

    maps = run(rule)
    assert maps["pred"].tolist() == [0, 0] and maps["case"].tolist() == [3, 3] and maps[CERTIFIED].tolist() == [-1, -1]


def reference(model, x, keep, fill):
    """Algorithm 1 and the certificate per image, from the full two-mask prediction map, in plain Python."""
    preds, certs = [], []
    for img in x:
        pm = [[int(model(torch.where(keep[i] & keep[j], img, fill[0])[None]).argmax()) for j in range(len(keep))]
              for i in range(len(keep))]
        first = [pm[i][i] for i in range(len(keep))]
        labels = sorted(set(first))
        counts = [first.count(lab) for lab in labels]
        majority = labels[counts.index(max(counts))]  # ties: the smallest label
        pred = majority
        if len(labels) > 1:
            for i in range(len(keep)):
                if first[i] != majority and all(pm[i][j] == first[i] for j in range(len(keep))):
                    pred = first[i]
                    break
        certs.append(majority if all(v == majority for row in pm for v in row) else -1)
        preds.append(pred)
    return preds, certs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_decision_equals_the_per_image_reference(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    model = Classifier(net, [0.4], [0.3], "tiny", ["a", "b", "c"]).eval().requires_grad_(False)
    x = torch.rand(6, 1, 12, 12)
    x[:, :, 2:6, 5:9] = torch.rand(6, 1, 1, 1)  # a uniform square per image moves the labels around
    d = PatchCleanser(patch_px=3, k=3, chunk=7)
    maps = d.maps(x, model)
    preds, certs = reference(model, x, mask_set(12, 12, 3, 3), d.fill_value(x, model))
    assert maps["pred"].tolist() == preds and maps[CERTIFIED].tolist() == certs
    assert torch.equal(model(maps[OUT]).argmax(1), maps["pred"])


def test_parameters_listing_and_refusals():
    assert "patchcleanser" in DEFENSES and DEFENSES["patchcleanser"].param_names() == ["patch_px", "k", "fill", "certify"]
    for bad in ({"k": 0}, {"patch_px": 2.5}, {"fill": "grey"}, {"fill": 1.5}, {"certify": "yes"}):
        with pytest.raises(PatchbenchError, match="patchcleanser"):
            build_defense("patchcleanser", bad)
    with pytest.raises(PatchbenchError, match="needs the classifier"):
        PatchCleanser(patch_px=2, k=2).maps(torch.rand(1, 1, 8, 8), None)
    maps = PatchCleanser(patch_px=2, k=2, certify=False).maps(torch.rand(1, 1, 8, 8), Rule(lambda v: torch.zeros(len(v), dtype=torch.long)))
    assert CERTIFIED not in maps


# ---- soundness: a certified image is never flipped by a patch of the certified size --------------


def stripes(n, gen, size=16):
    """Two classes: horizontal (0) or vertical (1) stripes of random phase and period, plus noise."""
    y = torch.randint(0, 2, (n,), generator=gen)
    ar = torch.arange(size).float()
    period = torch.randint(3, 6, (n, 1, 1), generator=gen).float()
    phase = torch.rand(n, 1, 1, generator=gen) * 6
    rows = ((ar.view(1, -1, 1) + phase) % period < period / 2).float().expand(n, size, size)
    cols = ((ar.view(1, 1, -1) + phase) % period < period / 2).float().expand(n, size, size)
    x = torch.where(y.view(-1, 1, 1) == 0, rows, cols) * 0.8 + 0.1 + 0.05 * torch.randn(n, size, size, generator=gen)
    return x.clamp(0, 1).unsqueeze(1), y


@pytest.fixture(scope="module")
def striped_model():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))  # max pooling: patch-vulnerable
    model = Classifier(net, [0.5], [0.3], "stripes", ["h", "v"])
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        x, y = stripes(64, gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval().requires_grad_(False)
    x, y = stripes(40, gen)
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    return model, x, y


def patch_attack(model, defense, x, y, p, positions, steps=12, lr=0.25, until=None):
    """Per position, a p×p patch trained by signed gradient ascent on the cross-entropy of the
    defended prediction, through the defense's declared (exact) gradient; True where an image is flipped.
    The steps go through the defense without its certificate (PatchCleanser's prediction and output do
    not depend on it: only the cost does), the final check through the defense as the engine runs it.
    ``until`` (a mask of images): stop after the first position that flips one of them, for a test that
    asks only whether one exists."""
    flipped = torch.zeros(len(x), dtype=torch.bool)
    gen = torch.Generator().manual_seed(1)
    through = dataclasses.replace(defense, certify=False) if isinstance(defense, PatchCleanser) else defense
    for r, c in positions:
        delta = torch.rand(len(x), 1, p, p, generator=gen).requires_grad_(True)
        for step in range(steps + 1):
            xa = x.clone()
            xa[:, :, r:r + p, c:c + p] = delta.clamp(0, 1)
            if step == steps:
                break
            loss = torch.nn.functional.cross_entropy(model(through.differentiable(xa, None, model)), y)
            (g,) = torch.autograd.grad(loss, delta)
            delta = (delta + lr * g.sign()).clamp(0, 1).detach().requires_grad_(True)
        with torch.no_grad():
            flipped |= model(defense(xa.detach(), None, model)).argmax(1) != y  # the engine's path
        if until is not None and (flipped & until).any():
            break
    return flipped


def test_certified_images_are_never_flipped_by_a_patch_of_the_certified_size(striped_model):
    model, x, y = striped_model
    p, n = 4, x.shape[-1]
    d = PatchCleanser(patch_px=p, k=3, fill=0.5)
    maps = d.maps(x, model)
    certified = maps[CERTIFIED] == y
    assert certified.sum() >= 10, "the test needs certified images"
    gen = torch.Generator().manual_seed(5)
    positions = [tuple(v) for v in torch.randint(0, n - p + 1, (6, 2), generator=gen).tolist()]
    positions += [(0, 0), (n - p, n - p), (6, 6)]
    flipped = patch_attack(model, d, x, y, p, positions)
    assert not (flipped & certified).any(), "a certified image was flipped: the certificate is wrong"
    # the attack has teeth: undefended, the same patches flip images
    undefended = patch_attack(model, build_defense("none"), x, y, p, positions[:3], until=torch.ones_like(y, dtype=torch.bool))
    assert undefended.any()


def test_a_certificate_from_masks_too_small_is_broken_by_the_same_attack(striped_model):
    """The check above fails when certification is wrong: masks built for 1 px patches certify images
    that an 8 px patch then flips."""
    model, x, y = striped_model
    wrong = PatchCleanser(patch_px=1, k=3, fill=0.5)
    certified = wrong.maps(x, model)[CERTIFIED] == y
    positions = list(itertools.product([0, 4, 8], [0, 4, 8]))
    flipped = patch_attack(model, wrong, x, y, 8, positions, steps=20, until=certified)
    assert (flipped & certified).any()


# ---- through the engine: the certified result per image and per cell, stored and resumable -------


def test_the_engine_stores_the_certificate_per_image_and_per_cell(tmp_path, striped_model):
    from patchbench.attacks.patch import Patch
    from patchbench.data import TensorImages
    from patchbench.defenses.base import NoDefense
    from patchbench.evaluation.engine import Condition, DefenseRun, EvalContext, evaluate
    from patchbench.store.results import ResultStore

    model, x, y = striped_model
    source = TensorImages((x * 255).round().to(torch.uint8), y)
    patch = Patch(torch.ones(1, 4, 4), torch.ones(1, 4, 4), {"attack": "lavan", "target": 1, "placement": "top-right",
                                                           "margin": 1})
    store = ResultStore(tmp_path)
    ctx = {"dataset": "stripes", "split": "test", "eval_seed": 0, "image_size": 16, "model": "stripes", "model_id": "s"}
    d = PatchCleanser(patch_px=4, k=3, fill=0.5)
    runs = [DefenseRun(NoDefense(), [None]), DefenseRun(d, [None])]
    idx = torch.arange(len(y))
    setup = EvalContext(model, source, idx, 16, 16, store, torch.device("cpu"), ctx, {"preset": "stripes"}, progress=False)
    rows = evaluate(setup, [Condition(None), Condition(patch)], runs)
    pc = rows[rows["defense"] == "patchcleanser"].set_index("condition")
    none = rows[rows["defense"] == "none"]
    assert none["n_certified"].isna().all()  # only a certifying defense fills the columns
    xs = source.images.float() / 255
    expected = (d.maps(xs, model)[CERTIFIED] == y)
    clean = store.load_predictions(pc.loc["clean", "run_id"])
    assert clean["certified"].tolist() == expected.tolist()
    assert pc.loc["clean", "n_certified"] == int(expected.sum()) > 0
    assert pc.loc["clean", "certified_accuracy"] == pytest.approx(expected.float().mean().item())
    # certified images keep their label under the patch (4 px, the certified size), cell for cell
    attacked = store.load_predictions(pc.loc["attacked", "run_id"])
    assert (attacked["pred"][clean["certified"]] == attacked["label"][clean["certified"]]).all()
    again = evaluate(setup, [Condition(None), Condition(patch)], runs)
    assert sorted(again["created"]) == sorted(rows["created"])  # resumed: nothing recomputed
    # the table: clean and certified accuracy of the PatchCleanser row, no certified image flipped
    from patchbench.sections.certified import build_certified
    from patchbench.table import TableContext

    table, caption = build_certified(None, store.load_cells(), TableContext("stripes", {}, lambda name: None))
    r = table.set_index("Defense").loc["PatchCleanser 4 px (k=3, fill 0.5)"]
    assert r["certified"] == f"{100 * expected.float().mean().item():.1f}" and r["flipped"] == "0"
    assert r["LaVAN 4 px"] == f"{100 * pc.loc['attacked', 'accuracy']:.1f}" and "certified" in caption


# ---- the paper-scale presets on stand-ins ------------------------------------------------------------

PAPER_SETS = sets(
    model__weights="null", data__eval_n=1, data__batch_size=1, data__num_workers=0, data__ssim_n=0,
    **{f"attacks__{i}__{k}": v for i in (0, 1) for k, v in
       (("sizes", "[32]"), ("steps", 1), ("batch_size", 1), ("success_n", 1), ("lr_milestones", "[1]"))},
    defenses="[{name: lgs, window: 15, overlap: 5, threshold: 0.2, space: normalized, lambdas: [2.3]}]",
    # the adaptive section's LaVAN through LGS (ResNet-50 and ViT-B/16 at 224 px: a sixth of this test's time) is the
    # path test_papers.py's ICAART stand-in runs through LGS, SLGS and WLGS: left out here (no adaptive defenses);
    # the certified section's adaptive LaVAN through PatchCleanser, at the adaptive section's size, stays
    adaptive__defenses="[]", certified__k=2, certified__adaptive_steps=1, audit__probes=1)


@pytest.mark.slow
def test_paper_scale_presets_run_on_stand_ins(tmp_path, two_threads):
    """`reproduce patchcleanser2022 --preset-scale paper`: both presets (ResNet-50 and ViT-B/16, random weights, 224
    px) through the code a GPU user runs, on stand-ins: a 2-class ImageFolder, one image, one-step attacks, LGS only,
    k = 2, the adaptive LaVAN through PatchCleanser only (on ResNet-50): the certified table with its PatchCleanser row."""
    root = make_image_folder(tmp_path / "data", per_class=1, size=224)
    results, out = tmp_path / "results", tmp_path / "reports"
    # the certified section's adaptive LaVAN through PatchCleanser is one path for both models: it runs on ResNet-50
    # only; ViT-B/16's preset runs its grid, certification, audit and tables (each preset by its own --only)
    for only, extra in (("patchcleanser-resnet50", []), ("patchcleanser-vit_b_16", sets(certified__adaptive="false"))):
        run_cli("reproduce", "patchcleanser2022", "--preset-scale", "paper", "--data-root", root, "--results", results,
                "--out", out, "--no-progress", "--allow-cpu", *PAPER_SETS, *extra, "--only", only)
    df = cells(results)
    assert set(df["model"]) == {"resnet50", "vit_b_16"}
    assert (df["defense"] == "patchcleanser").any() and df["certified_accuracy"].notna().any()
    text = (out / "certified.md").read_text()
    assert "PatchCleanser 32 px (k=2)" in text


@pytest.mark.slow
def test_vit_b16_preset_builds_and_its_saliency_has_a_second_order_gradient():
    """The ViT-B/16 preset's model (random init, 224 px) through SLGS/WLGS's saliency with create_graph, as
    the adaptive attack uses it: attention's fused kernels have no double backward, the math kernel does."""
    from patchbench.defenses.saliency import saliency_map
    from patchbench.models import build_classifier
    from patchbench.presets import load_preset

    p = load_preset("patchcleanser-vit_b_16", ["model.weights=null"])
    assert (p.model.arch, p.data.image_size, p.extra["certified"].k) == ("vit_b_16", 224, 6)
    model = build_classifier(p.model.arch, p.data.dataset, None, p.data.image_size).eval()
    with torch.no_grad():  # torchvision starts ViT's head at zero: logits (and every gradient) would be 0
        for name, param in model.named_parameters():
            if "heads" in name:
                param.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    x = torch.rand(1, 3, 224, 224, requires_grad=True)
    m = saliency_map(model, x, top_k=5, create_graph=True)
    (g,) = torch.autograd.grad(m.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


# ---- the batched certification against the reference's per-image loop (benchmarks/pc_reference.py) ----

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pc_reference  # noqa: E402  (the loop with the authors' structure that make bench times patchbench against)


class Counting(nn.Module):
    """A classifier that records every image it is shown (bytes), to count distinct and repeated forwards."""

    def __init__(self, model):
        super().__init__()
        self.model, self.mean, self.seen = model, model.mean, []

    def forward(self, x):
        self.seen += [bytes(xi.contiguous().numpy()) for xi in x]
        return self.model(x)


def varied_images(n, size, seed):
    """Random images with a uniform square each, which moves a small net's masked labels around."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    x[:, :, 2:6, 5:9] = torch.rand(n, 1, 1, 1, generator=g)
    return x


@pytest.mark.parametrize("seed,k", [(8, 3), (1, 4)])
def test_batched_certification_equals_the_reference_structure_loop(seed, k):
    """pc_reference.certify_loop (per image, every two-mask prediction i <= j, masks applied as 0 in the
    normalized tensor, certify_precomputed / double_masking_precomputed) against PatchCleanser.maps on
    the whole batch, image by image; every case of Algorithm 1 and both certificate outcomes occur."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    model = Classifier(net, [0.4], [0.3], "tiny", ["a", "b", "c"]).eval().requires_grad_(False)
    x = varied_images(40, 12, seed)
    maps = PatchCleanser(patch_px=3, k=k, chunk=37).maps(x, model)
    pred, cert, _ = pc_reference.certify_loop(model, x, 3, k)
    assert maps["pred"].tolist() == pred.tolist() and maps[CERTIFIED].tolist() == cert.tolist()
    case = maps["case"]
    assert set(case.tolist()) == {1, 2, 3}
    assert (cert >= 0).any() and ((case == 1) & (maps[CERTIFIED] < 0)).any()  # unanimous yet not certified


def test_each_distinct_masked_image_goes_through_the_model_once_and_only_as_needed():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    model = Counting(Classifier(net, [0.4], [0.3], "tiny", ["a", "b", "c"]).eval().requires_grad_(False))
    x = varied_images(24, 12, 0)
    d = PatchCleanser(patch_px=3, k=4, chunk=50)
    maps = d.maps(x, model)
    m = len(mask_set(12, 12, 3, 4))
    assert maps["forwards"] == len(model.seen) == len(set(model.seen))  # no masked image twice
    assert len(model.seen) < len(x) * m * (m + 1) // 2  # fewer than the reference's full maps
    # the first round is all one-mask images; the certificate then needs every pair of each certified image
    n_cert = int((maps[CERTIFIED] >= 0).sum())
    assert n_cert and len(model.seen) >= len(x) * m + n_cert * m * (m - 1) // 2


def test_all_equal_stops_an_item_at_its_first_disagreement():
    """Items checked in stages: an item whose pair disagrees at position t costs the stages up to t only."""
    from patchbench.defenses.mask_pairs import MaskedLabels

    model = Counting(Rule(lambda vis: torch.where(visible_any(vis, 0, 3, 0, 3), 0, 1)))  # 1 once the corner is hidden
    keep = mask_set(12, 12, 3, 4)  # mask 0 hides the corner
    labels = MaskedLabels(model, torch.ones(2, 1, 12, 12), keep, torch.full((1, 1, 1, 1), 0.5), chunk=64)
    m = len(keep)
    a = torch.arange(1, m).expand(2, -1)  # pairs (j, j') that never hide the corner ...
    b = torch.arange(1, m).expand(2, -1).clone()
    b[1, 2] = 0  # ... except image 1's third pair
    ok = labels.all_equal(torch.tensor([0, 1]), a, b, torch.tensor([0, 0]), stages=(2, 4))
    assert ok.tolist() == [True, False]
    assert labels.forwards == len(model.seen) == (m - 1) + 4  # image 0: every pair; image 1: the stages to its miss


def test_the_evaluation_orders_are_permutations_of_the_pairs_each_check_needs():
    """The order only decides how soon a check can stop: every pair i < j for the certificate, every
    other mask for a disagreer, each exactly once (least confident pairs first; other labels, most
    confident first)."""
    from patchbench.defenses.patchcleanser import certificate_order, second_round_order

    g = torch.Generator().manual_seed(0)
    margin = torch.rand(3, 9, generator=g)
    ia, ib = certificate_order(margin)
    for r in range(3):
        pairs = list(zip(ia[r].tolist(), ib[r].tolist()))
        assert sorted(pairs) == list(itertools.combinations(range(9), 2))
        sums = [margin[r, i] + margin[r, j] for i, j in pairs]
        assert sums == sorted(sums)
    first = torch.randint(0, 3, (3, 9), generator=g)
    di = torch.tensor([0, 4, 8])
    order = second_round_order(first, margin, di)
    for r in range(3):
        js = order[r].tolist()
        assert sorted(js) == [j for j in range(9) if j != di[r]]
        other = [first[r, j] != first[r, di[r]] for j in js]
        assert other == sorted(other, reverse=True)  # another label first
        for group in (True, False):
            conf = [margin[r, j] for j, o in zip(js, other) if o == group]
            assert conf == sorted(conf, reverse=True)


@pytest.mark.parametrize("n,ok", [(None, True), (200, True), (0, False), (2.5, False), ("all", False)])
def test_certified_n_is_checked_before_any_work(n, ok):
    """``certified.n`` (PatchCleanser on the first n evaluation images) is an integer >= 1 or absent."""
    from dataclasses import replace as dc_replace

    from patchbench.sections.certified import check_certified
    from patchbench.presets import load_preset

    preset = load_preset("demo-fmnist")
    preset.extra["certified"] = dc_replace(preset.extra["certified"], n=n)
    if ok:
        check_certified(preset)
    else:
        with pytest.raises(PatchbenchError, match="certified.n must be an integer >= 1"):
            check_certified(preset)
