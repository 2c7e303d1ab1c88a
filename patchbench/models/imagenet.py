"""torchvision ImageNet classifiers with their weights through the torchvision weights API.

Offline use: torchvision caches weights in ``$TORCH_HOME/hub/checkpoints/<file>``. When that file
is missing and cannot be downloaded, the error names the file to place there, or the user passes
``--weights PATH`` (a state dict). ``PATCHBENCH_OFFLINE=1`` skips the download attempt.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from patchbench.errors import PatchbenchError
from patchbench.models.registry import register_model

# torchvision constructor kwargs that a weights file expects (what torchvision sets itself when
# it is given weights); random-init stand-ins use the same graph so state dicts line up.
_PRETRAINED_KWARGS = {
    "inception_v3": {"aux_logits": True, "transform_input": True, "init_weights": False},
}


def weights_file(arch: str, weights_name: str) -> Path:
    """Where torchvision looks for the cached weights of ``arch``/``weights_name``."""
    enum = _weights_enum(arch, weights_name)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)


def _weights_enum(arch: str, weights_name: str):
    from torchvision.models import get_model_weights  # reason: torchvision takes seconds to import (it loads torch._dynamo); only named weights need it

    try:
        return get_model_weights(arch)[weights_name]
    except KeyError:
        known = ", ".join(["DEFAULT", *get_model_weights(arch).__members__])
        raise PatchbenchError(f"unknown weights {weights_name!r} for {arch}; known: {known}, or a file path") from None


def load_state_dict(arch: str, weights: str) -> tuple[dict, list[str] | None]:
    path = Path(weights)
    if path.suffix in (".pth", ".pt", ".bin") or path.exists():
        if not path.is_file():
            raise PatchbenchError(f"weights file not found: {weights}")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise PatchbenchError(f"cannot read weights file {weights}: {type(exc).__name__}") from None
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        return sd, None
    enum = _weights_enum(arch, weights)
    cached = weights_file(arch, weights)
    categories = enum.meta.get("categories")
    hint = (f"ImageNet weights for {arch} ({enum}) are not available offline: place {cached.name} "
            f"in {cached.parent}/ or pass --weights PATH")
    if not cached.exists() and os.environ.get("PATCHBENCH_OFFLINE"):
        raise PatchbenchError(hint)
    if cached.exists():  # a file placed by hand (perhaps from a mirror): torch.hub would unpickle it unrestricted
        try:
            return torch.load(cached, map_location="cpu", weights_only=True), categories
        except Exception as exc:
            raise PatchbenchError(f"cannot read weights file {cached}: {type(exc).__name__} (not a plain state dict: "
                                  "refused, nothing in it was run); replace it with the official file") from None
    try:  # torch.hub's weights_only defaults to False: a state dict needs no code
        return enum.get_state_dict(progress=True, check_hash=True, weights_only=True), categories
    except Exception:
        raise PatchbenchError(hint) from None


def _torchvision(arch: str):
    def build(num_classes: int, in_channels: int, weights=None):
        if in_channels != 3:
            raise PatchbenchError(f"{arch} takes RGB images; the dataset has {in_channels} channel(s)")
        kwargs = dict(_PRETRAINED_KWARGS.get(arch, {}))
        if weights is None and kwargs:
            kwargs["init_weights"] = True
            kwargs["transform_input"] = False  # random init: the plain graph, no re-normalization
        import torchvision.models  # reason: torchvision takes seconds to import; only these architectures need it

        def network() -> torch.nn.Module:
            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)

        if weights is None:
            return network(), None
        # the weights first: a missing file fails before anything is built, and the network is built on the meta
        # device and takes the loaded tensors as they are (assign=True) instead of a random init they replace
        # (VGG16's 138 M parameters: seconds on a CPU)
        sd, categories = load_state_dict(arch, weights)
        # as a copy into a float32 network would cast them (a half-precision file gives a float32 model)
        sd = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in sd.items()}
        with torch.device("meta"):
            net = network()
        try:
            net.load_state_dict(sd, assign=True)
        except RuntimeError as exc:
            raise PatchbenchError(f"weights do not fit {arch}: {str(exc).splitlines()[0]}") from None
        if any(t.is_meta for t in (*net.parameters(), *net.buffers())):
            # a tensor the state dict does not hold (a non-persistent buffer): built and initialised as usual
            net = network()
            net.load_state_dict(sd)
        return net, categories

    build.__doc__ = f"torchvision {arch} (ImageNet weights via the torchvision weights API)"
    return build


# The torchvision architectures patchbench registers (the one list of them), each with its Grad-CAM
# layer: the last convolutional activation (Selvaraju et al. use VGG16's relu5_3, 14×14 at 224 px;
# Inception-v3's Mixed_7c is the TOMM paper's 8×8 grid at 299 px; ResNet-50's layer4 7×7)
CAM_LAYERS = {
    "vgg16": "features.29",
    "inception_v3": "Mixed_7c",
    "resnet50": "layer4",
    "efficientnet_b0": "features.8",
    "vit_b_16": None,  # no convolutional map (PatchCleanser's ViT-B/16, 224 px only); Grad-CAM objectives refuse it
    "alexnet": "features.11",  # ImageNet-Patch's repository evaluates AlexNet (its example and notebook)
    "resnet18": "layer4",
}

for _arch, _layer in CAM_LAYERS.items():
    register_model(_arch, pretrained=True, cam_layer=_layer)(_torchvision(_arch))
