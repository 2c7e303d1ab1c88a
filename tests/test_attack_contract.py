"""Every registered attack through the one Attack contract, on a tiny model and 2×1×16×16 images.

* one signature for all: ``check_config(cfg, image_size, where)`` and
  ``from_config(model, cfg, image_size, progress=False)``; ``fit`` and ``success_rate`` are
  abstract on :class:`PatchAttack`;
* an evasion attack returns images of the input's shape, in [0, 1], within its budget (its ε, or
  its N pixels for an L0 attack);
* a patch attack fits a few steps and returns a :class:`Patch` of the requested size whose
  ``success_rate`` is in [0, 1], and pastes it only inside the patch's box;
* ``check_config`` refuses a bad entry with a one-line PatchbenchError naming what is wrong.
"""

import inspect
from dataclasses import replace

import pytest
import torch

from patchbench.attacks import ATTACKS, Attack, Patch, PatchAttack, Placement
from patchbench.config import AttackConfig, EvasionConfig
from patchbench.errors import PatchbenchError
from patchbench.models import build_classifier

SIZE, EPS, PATCH_PX = 16, 0.1, 4
EVASION = [n for n, c in ATTACKS.items() if not issubclass(c, PatchAttack)]
PATCH = [n for n, c in ATTACKS.items() if issubclass(c, PatchAttack)]


@pytest.fixture(scope="module")
def case():
    """small_vgg (random init, its registered Grad-CAM layer for A3), two images, their predicted labels."""
    torch.manual_seed(0)
    model = build_classifier("small_vgg", "fashion-mnist", image_size=SIZE)
    x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    target = next(t for t in range(10) if t not in y.tolist())  # every image a non-target image
    return model, x, y, target


def evasion_entry(name: str, **changes) -> EvasionConfig:
    """A small valid entry: 2 steps (the DE iterations, the local search's rounds of an L0 attack) where
    it takes any, a 4-individual population where it has one."""
    accepted = ATTACKS[name].accepted_params()
    steps = 2 if accepted & {"steps", "iterations", "rounds"} else None
    params = {"population": 4, "pixels": 2} if "population" in accepted else {}
    return replace(EvasionConfig(name, EPS, steps=steps, params=params), **changes)


def patch_entry(name: str, target: int, **changes) -> AttackConfig:
    return replace(AttackConfig(name, sizes=[PATCH_PX], target=target, margin=1, steps=3, batch_size=2), **changes)


def _params(method) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(method).parameters.values()]


def test_one_configuration_signature_for_every_attack():
    for method in ("check_config", "from_config"):
        signatures = {name: _params(getattr(cls, method)) for name, cls in ATTACKS.items()}
        assert len({str(s) for s in signatures.values()}) == 1, (method, signatures)
    assert _params(Attack.check_config) == [("cfg", inspect.Parameter.empty), ("image_size", inspect.Parameter.empty),
                                            ("where", "attack")]
    assert _params(Attack.from_config)[-2:] == [("image_size", inspect.Parameter.empty), ("progress", False)]
    assert {"fit", "success_rate", "from_config"} <= PatchAttack.__abstractmethods__
    fit = _params(PatchAttack.fit)
    assert [n for n, _ in fit] == ["self", "batches", "channels", "holdout"]
    assert all(_params(ATTACKS[n].fit) == fit for n in PATCH)


@pytest.mark.parametrize("name", EVASION)
def test_evasion_attack_keeps_shape_range_and_budget(name, case):
    model, x, y, _ = case
    atk = ATTACKS[name].from_config(model, evasion_entry(name), SIZE)
    adv = atk(x, y)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert adv.min() >= 0 and adv.max() <= 1
    eps = getattr(atk, "eps", None) or getattr(getattr(atk, "attack", None), "eps", None)  # an A3 wraps its L∞ attack
    if eps is not None:
        assert eps == EPS and (adv - x).abs().max() <= EPS + 1e-6
    else:  # an L0 attack: at most its N pixels change per image
        changed = (adv != x).any(1).flatten(1).sum(1)
        assert (changed <= atk.pixels).all(), changed


@pytest.mark.parametrize("name", PATCH)
def test_patch_attack_fits_a_patch_of_the_requested_size(name, case):
    model, x, y, target = case
    atk = ATTACKS[name].from_config(model, patch_entry(name, target), SIZE)
    patch = atk.fit(iter([(x, y)] * 3), channels=1, holdout=(x, y))
    assert isinstance(patch, Patch) and atk.patch is patch
    assert patch.size == PATCH_PX and patch.pixels.shape == (1, PATCH_PX, PATCH_PX)
    assert 0 <= patch.pixels.min() and patch.pixels.max() <= 1
    assert 0 <= atk.success_rate([(x, y)]) <= 1
    out = atk(x, y)
    assert out.shape == x.shape
    top, left = Placement("top-right", 1).offset(SIZE, PATCH_PX)
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    inside[top:top + PATCH_PX, left:left + PATCH_PX] = True
    assert torch.equal(out[..., ~inside], x[..., ~inside])


@pytest.mark.parametrize("name", PATCH)
def test_a_patch_attack_is_built_for_one_size(name, case):
    model, _, _, target = case
    with pytest.raises(PatchbenchError, match="one patch size"):
        ATTACKS[name].from_config(model, patch_entry(name, target, sizes=[4, 6]), SIZE)


BAD_EVASION = [(dict(steps=0), "steps"), (dict(params={"nope": 1}), "nope"), (dict(step_size=-1.0), "step_size")]
BAD_PATCH = [(dict(placement="nowhere"), "placement"), (dict(steps=0), "steps"), (dict(sizes=[SIZE]), "patch size"),
             (dict(optimizer="lbfgs"), "optimizer")]


@pytest.mark.parametrize("name,bad,says", [(n, b, s) for n in EVASION for b, s in BAD_EVASION]
                         + [(n, b, s) for n in PATCH for b, s in BAD_PATCH])
def test_check_config_refuses_a_bad_entry_in_one_line(name, bad, says):
    cfg = evasion_entry(name, **bad) if name in EVASION else patch_entry(name, 0, **bad)
    with pytest.raises(PatchbenchError) as err:
        ATTACKS[name].check_config(cfg, SIZE, where="attacks.0")
    msg = str(err.value)
    assert says in msg and "\n" not in msg, msg
