import torch

from patchbench.attacks import LaVAN
from patchbench.attacks.patch import Placement

from conftest import corner_model


def test_lavan_reaches_target_and_stays_in_range():
    model = corner_model()
    x = torch.rand(64, 1, 16, 16) * 0.3
    y = torch.zeros(64, dtype=torch.long)
    atk = LaVAN(model, size=4, target=2, placement=Placement("top-right", 0), image_size=16,
                steps=40, lr=0.5, momentum=0.9, seed=0, progress=False)
    before = (model(x).argmax(1) == 2).float().mean()
    patch = atk.fit(iter([(x, y)] * 40), channels=1)
    assert before == 0
    assert patch.pixels.min() >= 0 and patch.pixels.max() <= 1
    assert atk.success_rate([(x, y)]) == 1.0
    adv = atk(x, y)
    assert torch.equal(adv[:, :, 4:, :], x[:, :, 4:, :])  # outside the patch nothing changes
    assert patch.meta["size_px"] == 4 and patch.meta["area_pct"] == 6.25


def test_lavan_loss_is_eq3():
    atk = LaVAN(corner_model(), 4, 2, Placement(), 16, progress=False)
    logits = torch.tensor([[1.0, 2.0, 5.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 1])
    # -(z_target - z_source): -(5 - 1) and -(1 - 3)
    assert torch.isclose(atk.loss(logits, labels), torch.tensor((-4.0 + 2.0) / 2))


def test_lavan_is_deterministic():
    model = corner_model()
    x = torch.rand(8, 1, 16, 16)
    y = torch.zeros(8, dtype=torch.long)
    runs = [LaVAN(model, 4, 2, Placement(), 16, steps=5, seed=7, random_placement=True, progress=False)
            .fit(iter([(x, y)] * 5), channels=1).pixels for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_restarts_are_trained_together_and_the_best_on_the_holdout_is_kept():
    """k restarts in one k·B batch: restart 0 is exactly the single-start run (same random
    numbers, fixed placement), and the kept patch is the best of the k on the held-out batch."""
    model = corner_model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 16, 16, generator=g) * 0.3
    y = torch.zeros(32, dtype=torch.long)
    hold = (torch.rand(40, 1, 16, 16, generator=g) * 0.3, torch.zeros(40, dtype=torch.long))
    kw = dict(size=4, target=2, placement=Placement("top-right", 0), image_size=16, steps=3, lr=0.02,
              optimizer="sign", seed=5, progress=False)
    single = LaVAN(model, **kw).fit(iter([(x, y)] * 3), channels=1)
    multi = LaVAN(model, restarts=3, **kw)
    best = multi.fit(iter([(x, y)] * 3), channels=1, holdout=hold)
    assert len(multi.restart_success) == 3
    assert multi.restart_success[0] == multi.holdout_success(hold, single.pixels)
    chosen = best.meta["restart_chosen"]
    assert multi.restart_success[chosen] == max(multi.restart_success)
    assert multi.holdout_success(hold, best.pixels) == max(multi.restart_success)
    if chosen == 0:
        assert torch.equal(best.pixels, single.pixels)


def test_optimizers_raise_the_objective():
    model = corner_model()
    x = torch.rand(64, 1, 16, 16) * 0.3
    y = torch.zeros(64, dtype=torch.long)
    for opt, lr in (("sgd", 0.5), ("adam", 0.05), ("sign", 0.05)):
        atk = LaVAN(model, size=4, target=2, placement=Placement("top-right", 0), image_size=16, steps=30, lr=lr,
                    optimizer=opt, schedule="cosine", seed=0, progress=False)
        patch = atk.fit(iter([(x, y)] * 30), channels=1)
        assert (model(atk.apply(x, patch)).argmax(1) == 2).float().mean() > 0.9, opt
