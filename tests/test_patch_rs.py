"""Patch-RS (patchbench.attacks.patch_rs), Sparse-RS's universal-patch random search: its schedule
as the reference code's ``p_selection``, its budget in queries (LaVAN's, forward passes only), and a
toy model whose optimal patch is known (all ones)."""

import pytest
import torch
import torch.nn as nn

from patchbench.attacks import ATTACKS, Placement
from patchbench.attacks.patch_rs import PatchRS, window_share
from patchbench.config import AttackConfig

SIZE, PX = 16, 4


def test_window_share_follows_the_reference_schedule():
    """fra31/sparse-rs rs_attacks.py p_selection (patches): p_init, then p_init/2 past iteration 10,
    /4 past 50, /8 past 200, /16 past 500, /32 past 1000 and 2000, /64 past 4000 and 6000, /128 past
    8000, the iteration rescaled to 10 000 (resc_schedule)."""
    expected = {0: .8, 10: .8, 11: .4, 50: .4, 51: .2, 201: .1, 501: .05, 1001: .025, 2001: .025,
                4001: .0125, 6001: .0125, 8001: .00625, 9999: .00625}
    for it, p in expected.items():
        assert window_share(it, 10000) == pytest.approx(p), it
    assert window_share(1, 100) == pytest.approx(.2)  # iteration 1 of 100 counts as 100 of 10 000
    assert window_share(0, 100, p_init=0.5) == pytest.approx(.5)


class PatchSum(nn.Module):
    """Class 0's logit: the sum of the pixels under the top-right 4 px patch (margin 1); class 1's: 8.
    The targeted (class 0) margin loss is minimal, and every image fooled, with a patch of all ones.
    Counts the images it is shown and whether a gradient was being recorded."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # an attack finds the device from the parameters
        self.images, self.grad_calls = 0, 0

    def forward(self, x):
        self.images += len(x)
        self.grad_calls += int(torch.is_grad_enabled())
        top, left = Placement("top-right", 1).offset(SIZE, PX)
        z0 = x[:, 0, top:top + PX, left:left + PX].sum((1, 2)) + self.anchor
        return torch.stack([z0, torch.full_like(z0, PX * PX / 2)], 1)


def _entry(**kw) -> AttackConfig:
    return AttackConfig("patch_rs", sizes=[PX], target=0, margin=1, **kw)


def test_random_search_finds_the_known_optimum_with_lavans_queries_and_no_gradient():
    model = PatchSum()
    atk = ATTACKS["patch_rs"].from_config(model, _entry(steps=400, batch_size=3, restarts=2), SIZE)
    assert isinstance(atk, PatchRS)
    x = torch.rand(12, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    y = torch.ones(12, dtype=torch.long)
    batches = iter([(x[:3], y[:3]), (x[3:6], y[3:6]), (x[6:9], y[6:9])])
    patch = atk.fit(batches, channels=1)
    assert torch.equal(patch.pixels, torch.ones(1, PX, PX))
    # LaVAN with this entry sees steps × batch_size × restarts images; so does the search, forward only
    assert model.images == 400 * 3 * 2 and patch.meta["queries"] == 400 * 3 * 2
    assert model.grad_calls == 0
    assert next(batches)[0].shape[0] == 3  # it took the first `restarts` batches and no more
    # its trace: the accepted patch's loss never rises, and the first candidate is always taken
    trace = patch.meta["loss_trace"]
    assert all(b <= a for a, b in zip(trace, trace[1:])) and trace[-1] == pytest.approx(PX * PX / 2 - PX * PX)
    assert patch.meta["hit_trace"][-1] == 1.0
    assert "lr" not in patch.meta and patch.meta["search"].startswith("sparse-rs")


def test_random_search_keeps_pixels_binary_and_is_seeded():
    model = PatchSum()
    x = torch.rand(4, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    y = torch.ones(4, dtype=torch.long)
    a = ATTACKS["patch_rs"].from_config(model, _entry(steps=5, batch_size=4, seed=3), SIZE).fit(iter([(x, y)]), 1)
    b = ATTACKS["patch_rs"].from_config(model, _entry(steps=5, batch_size=4, seed=3), SIZE).fit(iter([(x, y)]), 1)
    c = ATTACKS["patch_rs"].from_config(model, _entry(steps=5, batch_size=4, seed=4), SIZE).fit(iter([(x, y)]), 1)
    assert set(a.pixels.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.pixels, b.pixels) and a.content_id() != c.content_id()


def test_random_placement_draws_one_location_per_image_for_the_run():
    """Gray images: the pasted pixels (0 or 1) show where each image's patch sits at every query."""
    seen = []

    class Where(PatchSum):
        def forward(self, x):
            seen.append((x != 0.5).any(1).nonzero()[:, 1:].view(len(x), PX * PX, 2).amin(1))  # top-left per image
            return super().forward(x)

    atk = ATTACKS["patch_rs"].from_config(Where(), _entry(steps=20, batch_size=8, random_placement=True), SIZE)
    x = torch.full((8, 1, SIZE, SIZE), 0.5)
    patch = atk.fit(iter([(x, torch.ones(8, dtype=torch.long))]), channels=1)
    assert len(seen) == 20 and all(torch.equal(s, seen[0]) for s in seen)  # fixed for the run
    assert len({tuple(v) for v in seen[0].tolist()}) > 1  # drawn per image
    assert patch.meta["random_placement"] is True
