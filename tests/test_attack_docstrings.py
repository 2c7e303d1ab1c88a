"""Attack docstrings follow torchattacks' style (issue 34 item 6): every registered attack's class
docstring cites its paper, lists its arguments, gives its shapes and an example — and the example
runs, as written, on a small classifier (its output keeps the images' shape and range)."""

import itertools
import re

import pytest
import torch

import patchbench.attacks as attacks
from patchbench.attacks import ATTACKS
from patchbench.attacks.placement import Placement
from patchbench.defenses.lgs import LGS
from patchbench.models import build_classifier

SIZE = 64


def _example(cls) -> str:
    doc = cls.__doc__ or ""
    block = doc.split("Examples::", 1)[1] if "Examples::" in doc else ""
    lines = [line.strip() for line in block.splitlines()]
    return "\n".join(line[4:] for line in lines if line.startswith((">>> ", "... ")))  # a statement and its continuation


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_docstring_has_a_citation_arguments_shapes_and_an_example(name):
    doc = ATTACKS[name].__doc__ or ""
    assert "Distance Measure :" in doc and "Arguments:" in doc and "Shape:" in doc and "Examples::" in doc, name
    assert re.search(r"\b(19|20)\d\d\b", doc.split("Distance Measure", 1)[0]), f"{name}: cite the paper (year)"
    code = ATTACKS[name].__init__.__code__
    params = code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount]
    arguments = doc.split("Arguments:", 1)[1].split("Shape:", 1)[0]
    missing = [p for p in params if not re.search(rf"\b{p}\b", arguments)]
    assert not missing, f"{name}: arguments not described: {missing}"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_example_runs_as_written(name, one_thread):
    torch.manual_seed(0)
    model = build_classifier("small_vgg", "fashion-mnist", image_size=SIZE).eval()
    images, labels = torch.rand(4, 1, SIZE, SIZE), torch.tensor([1, 2, 3, 4])
    space = {**vars(attacks), "model": model, "images": images, "labels": labels, "itertools": itertools,
             "Placement": Placement, "LGS": LGS}
    exec(_example(ATTACKS[name]), space)  # noqa: S102 - the docstring's own example, as a user would run it
    adv = space["adv_images"]
    assert adv.shape == images.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
