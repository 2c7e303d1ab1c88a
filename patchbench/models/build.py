"""Build a registered model for a dataset: the network behind the [0, 1]-input classifier wrapper,
or its volumetric counterpart behind a volumizer (BMVC 2023)."""

from __future__ import annotations

from patchbench.data import get_dataset_info
from patchbench.errors import PatchbenchError
from patchbench.models.registry import MODELS
from patchbench.models.volumetric import to_volumetric
from patchbench.models.wrapper import Classifier, VolumetricClassifier
from patchbench.volumization import Volumizer


def build_classifier(arch: str, dataset: str, weights: str | None = None, image_size: int | None = None,
                     volumize=None):
    """Build ``arch`` for ``dataset`` and wrap it with the dataset's normalization.

    ``weights``: for pretrained (torchvision) models a weights name ("DEFAULT", "IMAGENET1K_V1")
    or a path to a state dict; None = random init (the stand-in used in tests). ``volumize`` (a
    :class:`~patchbench.config.VolumizeConfig`): the volumetric counterpart g of the (2-D, possibly
    pretrained) ``arch`` behind a volumizer (BMVC 2023), a :class:`VolumetricClassifier`.
    """

    if arch not in MODELS:
        raise PatchbenchError(f"unknown model {arch!r}; known: {', '.join(MODELS)}")
    info = get_dataset_info(dataset)
    spec = MODELS[arch]
    net, class_names = spec.build(num_classes=info.num_classes, in_channels=info.channels, weights=weights)
    class_names = class_names or list(info.classes) or [str(i) for i in range(info.num_classes)]
    if volumize is not None:

        v = volumize
        net3d = to_volumetric(net, v.patch, info.channels, depth_kernel=v.depth_kernel, depth_pool=v.depth_pool,
                              min_spatial=v.min_spatial, inflate=v.inflate)
        volumizer = Volumizer(v.patch, metric=v.metric, order=v.order, bins=v.bins, reference=v.reference, pad=v.pad)
        return VolumetricClassifier(net3d, volumizer, v.aggregation, mean=info.mean, std=info.std,
                                    name=f"{arch}-volumetric", class_names=class_names, image_size=image_size)
    return Classifier(
        net, mean=info.mean, std=info.std, name=arch,
        class_names=class_names,
        image_size=image_size,
    )
