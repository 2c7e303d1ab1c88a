"""The attack, model and dataset registries: each name is taken once, and a second registration
under a taken name is refused (never a silent overwrite)."""

import pytest

from patchbench.attacks import ATTACKS, PGD, register_attack
from patchbench.data import DATASETS, get_dataset_info, register_dataset
from patchbench.errors import PatchbenchError
from patchbench.models import MODELS, register_model


def test_attacks_are_keyed_by_their_class_name():
    assert ATTACKS and all(cls.name == name for name, cls in ATTACKS.items())


def test_a_taken_attack_name_is_refused():
    class MyPGD(PGD):
        name = "pgd"

    before = dict(ATTACKS)
    with pytest.raises(PatchbenchError, match="attack name 'pgd' is already registered \\(PGD\\)"):
        register_attack(MyPGD)
    assert ATTACKS == before


def test_an_attack_without_its_own_name_is_refused():
    class Unnamed(PGD):
        pass

    with pytest.raises(PatchbenchError, match="attack Unnamed has no name of its own"):
        register_attack(Unnamed)


def test_a_taken_model_name_is_refused():
    spec = MODELS["small_vgg"]
    with pytest.raises(PatchbenchError, match="'small_vgg' is already registered"):
        register_model("small_vgg")(lambda num_classes, in_channels, weights=None: None)
    assert MODELS["small_vgg"] is spec


def test_pretrained_architectures_are_registered_once_and_the_volumetric_table_uses_them():
    from patchbench.models.volumetric import TORCHVISION_ARCHS

    pretrained = [name for name, spec in MODELS.items() if spec.pretrained]
    # every pretrained CNN of BMVC's Sec. 4.2 has its volumetric counterpart; ViT-B/16 (PatchCleanser's presets) has
    # no convolution or pooling window for the volumization to widen into depth; AlexNet and ResNet-18 are
    # ImageNet-Patch's models (evaluated, not volumized)
    assert sorted(set(pretrained) - {"vit_b_16", "alexnet", "resnet18"}) == sorted(TORCHVISION_ARCHS) and "vit_b_16" in pretrained


def test_a_taken_dataset_name_is_refused():
    info = get_dataset_info("mnist")
    with pytest.raises(PatchbenchError, match="'mnist' is already registered"):
        register_dataset(info)
    assert DATASETS["mnist"] is info
