"""Generic code asks classes what they can do (capabilities), never their names: the registries refuse a
class whose declared capabilities it cannot keep, and the shipped classes declare theirs."""

import dataclasses
from typing import ClassVar

import pytest

from patchbench.attacks import ATTACKS, PGD, evasion_label
from patchbench.attacks.base import check_attack_class
from patchbench.config import EvasionConfig
from patchbench.defenses import DEFENSES, NoDefense, certifies, is_undefended
from patchbench.defenses.base import UNDEFENDED, check_defense_class
from patchbench.errors import PatchbenchError


def test_only_the_identity_defense_is_identity_and_only_patchcleanser_certifies():
    assert [n for n, c in DEFENSES.items() if c.is_identity] == [UNDEFENDED] and NoDefense.name == UNDEFENDED
    assert [n for n in DEFENSES if certifies(n)] == ["patchcleanser"]
    assert is_undefended(UNDEFENDED) and not is_undefended("lgs") and not certifies("a plugin not loaded")


def test_a_defense_capability_must_be_a_bool():
    @dataclasses.dataclass
    class Vague(NoDefense):
        name: ClassVar[str] = "vague"
        certifies: ClassVar = "sometimes"

    with pytest.raises(PatchbenchError, match="certifies must be a bool"):
        check_defense_class(Vague)


def test_shared_trajectories_need_forward_at():
    assert {n for n, c in ATTACKS.items() if c.shares_trajectory_across_steps} == {"pgd", "cw"}

    class Claims(ATTACKS["fgsm"]):
        name = "claims"
        shares_trajectory_across_steps = True

    with pytest.raises(PatchbenchError, match="must define forward_at"):
        check_attack_class(Claims)


def test_a_subclass_labels_its_columns_with_its_own_name():
    class MyPGD(PGD):  # inherits PGD's steps in the label, not its display name
        name = "my-pgd"

    assert MyPGD.column_label(40) == "my-pgd40" and PGD.column_label(40) == "PGD40"
    assert evasion_label(EvasionConfig("cw", 0.1, 100)) == "CW100"
    assert evasion_label(EvasionConfig("iter-stepll", 0.1, 3)) == "Iter-StepLL"  # no steps in its label
    assert evasion_label(EvasionConfig("pgd", 0.1, 10, column="mine")) == "mine"
