"""Presets are immutable values (issue 34 item 4): a field cannot be assigned, at any depth; a
changed preset is a new one made with ``dataclasses.replace`` (or ``Preset.with_train``), and the
original is left as it was."""

import dataclasses

import pytest

from patchbench.presets import load_preset


@pytest.mark.parametrize("path", ["name", "data.eval_n", "model.arch", "model.train.seed", "attacks.0.steps",
                                  "defenses.0.lambdas", "audit.n", "extra.adaptive.steps"])
def test_assigning_a_preset_field_raises(path):
    node = load_preset("demo-fmnist")
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part] if isinstance(node, dict) else getattr(node, part)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(node, last, getattr(node, last))


def test_a_changed_preset_is_a_new_value_and_the_original_is_untouched():
    p = load_preset("demo-fmnist")
    q = p.with_train(seed=p.model.train.seed + 1, training="madry")
    r = dataclasses.replace(p, data=dataclasses.replace(p.data, eval_n=7))
    assert (q.model.train.seed, q.model.train.training) == (p.model.train.seed + 1, "madry")
    assert r.data.eval_n == 7 and p.data.eval_n != 7
    assert p == load_preset("demo-fmnist")  # nothing of p changed
    assert q.model.arch == p.model.arch and q.attacks == p.attacks
