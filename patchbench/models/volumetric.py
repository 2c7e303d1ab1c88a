"""3-D counterparts g of 2-D classifiers f for volumized images (BMVC 2023 Sec. 4.2, Eq. 5-9).

A volume is a tensor (B, C, N, ph, pw) — Conv3d layout, depth N = the image's ph×pw patches in
ranked order (Sec. 4.1, Eq. 3-4). :func:`to_volumetric` rewrites a 2-D network into g mapping a
volume to per-patch logits (B, N, k), and :func:`aggregate` turns them into one score per image.

The rewrite, layer by layer (the network is traced with ``torch.fx``, so functional calls inside
``forward`` — Inception-v3's ``F.max_pool2d``/``F.avg_pool2d``, ``torch.flatten`` — are rewritten
too; there is no hand-written copy of any architecture):

* Input layer (Eq. 5): g takes x_v of shape (B, C, N, ph, pw) instead of (B, C, H, W).
* Convolutions (Eq. 6 -> Eq. 7): Conv2d(k×k, stride s, padding p) -> Conv3d(kernel
  (``depth_kernel``, k, k), stride (1, s', s'), padding (same in depth, p', p')), groups,
  dilation (1, d, d) and bias kept. The paper writes "3×3×N" but also asks that "the kernel
  operates on each patch in the volume"; a depth of N (the whole volume) is one choice, a small
  depth window another, so the depth is ``depth_kernel`` (default 3, the measurement below).
  The depth padding keeps N: (d-1)/2 on both sides for odd d; for even d one slice more after
  than before ((d-1)//2 before, d//2 after).
* Pooling (Eq. 8 -> Eq. 9): MaxPool2d/AvgPool2d -> 3-D max/average pooling (:class:`PatchPool3d`)
  with depth window ``depth_pool``, depth stride 1 and same padding in depth, so N is kept as Eq. 9 states
  (p_h×p_w×C×N -> p_h'×p_w'×C×N). ``depth_pool`` > 1 lets a pooling window span neighbouring
  patches (the text's "3D max-pooling ... spans across multiple patches") while every patch
  keeps its own output; it must be odd. The BMVC presets use 3 (a patch and its two neighbours
  in the ranked volume); the default 1 pools per patch. A depth *stride* > 1 would shrink N, break the
  per-patch head and the channel concatenation of multi-branch nets, so it is not offered.
  Fixed-window poolings only: VGG16 has 5, ResNet-50 1, Inception-v3 13, EfficientNet-B0 none.
  AdaptiveAvg/MaxPool2d((a, b)) -> AdaptiveAvg/MaxPool3d((None, a, b)): per-patch global pooling,
  so the head's input size is unchanged and EfficientNet's squeeze-excitation pools per patch.
* Fully connected and output layers ("FC: R^(M,N) -> R^(L,N)", "O: R^(L,N) -> R^(k,N)"): the
  head's flatten (``torch.flatten(x, 1)``, ``x.flatten(1)``, ``nn.Flatten()``) becomes a per-patch
  flatten (B, C, N, h, w) -> (B, N, C·h·w), so the Linear layers (unchanged, same weights) act on
  the last dimension, one output per patch. BatchNorm2d -> BatchNorm3d; activations, Dropout and
  torchvision's StochasticDepth are kept as they are.

Strides and padding "adjusted accordingly" (Sec. 4.2): a 16×16 patch cannot go through VGG16's
five /2 poolings or Inception-v3's unpadded stem. The rule (``min_spatial``): the spatial size is
traced with an example volume; at each conv or pooling layer, per spatial axis, with
target = min(``min_spatial``, input size),

1. if the layer's output would be smaller than target, its stride becomes 1;
2. if it still would, a conv gets the smallest padding that makes it target (its kernel, hence its
   weights, is kept), a pooling's window is clipped to input - target + 1 (padding 0, dilation 1).

Every change is listed in :attr:`VolumetricNet.adjustments`. With the default ``min_spatial=1``
and 16×16 patches: VGG16's fifth pooling becomes the identity (1×1 window); ResNet-50 and
EfficientNet-B0 need no change; Inception-v3's ``Conv2d_4a_3x3`` and a few unpadded reduction
convs and poolings (Mixed_6a, Mixed_7a) are padded / clipped. ``patchbench``'s ``small_vgg`` on
16×16 patches (16 -> 8 -> 4 -> 2) has no change, so there g equals f per patch exactly (below).

Weights (``inflate``) — how a (trained) 2-D kernel W seeds the 3-D kernel:

* ``"center"`` (default): W in the middle depth slice ((d-1)//2), zeros elsewhere. g then starts as
  f applied to every patch separately (BatchNorm3d's statistics over (B, N, h, w) are those of
  BatchNorm2d over (B·N, h, w)) when ``depth_pool`` is 1 — with a deeper pooling window the
  poolings already mix neighbouring patches — and training learns the cross-patch weights from there. This is
  the default because a trained f stays a working per-patch classifier at initialization.
* ``"repeat"``: W/d in every depth slice (I3D inflation: a volume of identical patches gives f's
  features). With ranked, unrelated patches it averages neighbouring patches' features, so g does
  not start as f.
* ``"none"``: conv kernels keep PyTorch's Conv3d initialization (bias too); everything else is
  still copied.

BatchNorm parameters/statistics and Linear layers are always copied (their shapes do not change);
g owns copies, so training g never changes f.

Tracing: the network is traced in eval mode (``torch.fx``; control flow on ``self.training`` is
fixed at trace time). Training-only branches are therefore dropped — Inception-v3's auxiliary
classifier (build it with ``aux_logits=False``; listed in :attr:`VolumetricNet.dropped` otherwise) —
while torchvision's StochasticDepth is kept as a module so it still acts in train mode. g's
``train()``/``eval()`` switch BatchNorm and Dropout as usual. Not rewritten (a conversion error or a
wrong net): Linear layers before the head's flatten, ``view``/``reshape`` heads, per-image norms
(GroupNorm, LayerNorm2d), ops that index spatial axes with positive dims >= 2. The dataset
normalization of a :class:`~patchbench.models.wrapper.Classifier` is not part of the converted
network (convert ``classifier.net``, normalize the volume per channel before g).

Parameter increase, ours vs the paper (Sec. 4.2), measured with :func:`parameter_increase` (16×16
patches, 3 input channels, 10 classes, Inception-v3 without the auxiliary classifier — Keras'
InceptionV3 has none). The increase is (d - 1) × (the 2-D conv kernels' weights): biases, BatchNorm
and the heads are unchanged (per-patch adaptive pooling keeps the head's input size), so it depends
neither on the number of classes nor on the patch size::

    depth kernel d      vgg16        resnet50    inception_v3  efficientnet_b0   sum |rel. err|
    1                       0               0               0                0        4.00
    2              14,710,464      23,454,912      21,751,136        3,956,192        1.94
    3              29,420,928      46,909,824      43,502,272        7,912,384        0.73
    4              44,131,392      70,364,736      65,253,408       11,868,576        2.18
    5              58,841,856      93,819,648      87,004,544       15,824,768        4.24
    paper          20,663,968      48,566,533      44,252,266       10,569,436
    paper / conv weights  1.40           2.07            2.03             2.67   (= d - 1)

d = 3 is the closest: within 3.4 % (ResNet-50) and 1.7 % (Inception-v3) of the paper, 42 % above
it for VGG16 (which sits between d = 2 and 3) and 25 % below for EfficientNet-B0 (between 3 and 4).
d = 4 = N (a 32×32 CIFAR-10 image in 16×16 patches) overshoots all four and d = N = 196 (a
224×224 image) is far off, so "3×3×N" does not mean a kernel spanning the whole volume. No single d
matches all four (the paper's Keras models may differ in heads or layers). Default: 3.
"""

from __future__ import annotations

import copy
import math
from functools import cache, partial
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from patchbench.errors import PatchbenchError, check, is_int
from patchbench.models.registry import MODELS

DEFAULT_DEPTH_KERNEL = 3
INFLATE = ("center", "repeat", "none")
AGGREGATIONS = ("mean-log-prob", "mean-prob", "vote")

# BMVC 2023 Sec. 4.2: "VGG16 increasing by 20,663,968 parameters, ResNet50 by 48,566,533 ..."
PAPER_PARAMETER_INCREASE = {
    "vgg16": 20_663_968,
    "resnet50": 48_566_533,
    "inception_v3": 44_252_266,
    "efficientnet_b0": 10_569_436,
}
TORCHVISION_ARCHS = tuple(PAPER_PARAMETER_INCREASE)  # the four classifiers of Sec. 4.2, in the paper's order

# modules that act on any number of dimensions the same way (kept, deep-copied)
_KEPT = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
         nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softplus, nn.Identity,
         nn.Dropout, nn.AlphaDropout)


# --------------------------------------------------------------------------------------------
# 3-D building blocks


class PerPatchFlatten(nn.Module):
    """The head's flatten per patch: (B, C, N, h, w) -> (B, N, C·h·w), features in the order
    ``torch.flatten`` gives a patch's (C, h, w) map, so the 2-D Linear weights apply unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).flatten(2)


class DepthPadConv3d(nn.Conv3d):
    """Conv3d with an even depth kernel: (d-1)//2 zero slices before and d//2 after the volume,
    so the depth N is kept (Conv3d's own padding is symmetric; it pads only the spatial axes)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
                 bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None, *, depth_pad: tuple[int, int] = (0, 0)):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                         device=device, dtype=dtype)
        self.depth_pad = tuple(depth_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (0, 0, 0, 0, *self.depth_pad)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, depth_pad={self.depth_pad}"


class PatchPool3d(nn.Module):
    """3-D max or average pooling (Eq. 9) with window (``depth``, kh, kw), stride (1, sh, sw) and
    padding (``depth``//2, ph, pw): N is kept.

    Computed separably — the 2-D pooling on every patch, then a pooling of window ``depth`` along
    the patches. That is exact: the window is a product set, so its maximum, its sum and its
    number of valid (non-padding) cells all factor into a spatial and a depth part. (PyTorch's
    3-D pooling kernels refuse an input smaller than the window even when padding makes it fit,
    which 2×2 feature maps of a 16×16 patch meet in Inception blocks.) ``divisor_override``
    divides the window's sum; with ``depth`` > 1 the depth part then sums.
    """

    def __init__(self, mode: str, kernel_size, stride, padding, dilation=1, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None, depth: int = 1):
        super().__init__()
        self.mode, self.depth = mode, depth
        self.kernel_size, self.stride, self.padding, self.dilation = _pair(kernel_size), _pair(stride), _pair(padding), _pair(dilation)
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape[:3]
        y = x.transpose(1, 2).reshape(b * n, c, *x.shape[3:])
        if self.mode == "max":
            y = F.max_pool2d(y, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        else:
            y = F.avg_pool2d(y, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                             self.divisor_override)
        h, w = y.shape[-2:]
        y = y.reshape(b, n, c, h, w).transpose(1, 2)
        if self.depth == 1:
            return y
        z = y.permute(0, 1, 3, 4, 2).reshape(-1, 1, n)
        dp = self.depth
        if self.mode == "max":
            z = F.max_pool1d(z, dp, 1, dp // 2)
        elif self.divisor_override is not None:
            z = F.avg_pool1d(z, dp, 1, dp // 2, count_include_pad=True) * dp
        else:
            z = F.avg_pool1d(z, dp, 1, dp // 2, count_include_pad=self.count_include_pad)
        return z.reshape(b, c, h, w, n).permute(0, 1, 4, 2, 3)

    def extra_repr(self) -> str:
        text = (f"{self.mode}, kernel_size={(self.depth, *self.kernel_size)}, stride={(1, *self.stride)}, "
                f"padding={(self.depth // 2, *self.padding)}, ceil_mode={self.ceil_mode}")
        if self.mode == "max":
            return f"{text}, dilation={(1, *self.dilation)}"
        return f"{text}, count_include_pad={self.count_include_pad}, divisor_override={self.divisor_override}"


class VolumetricNet(nn.Module):
    """g of BMVC 2023 Sec. 4.2: volume (B, C, N, ph, pw) -> per-patch logits (B, N, k).

    ``body`` is the rewritten network (a ``torch.fx.GraphModule``; its state-dict keys are the 2-D
    network's). ``adjustments``: the stride/padding/window changes of the ``min_spatial`` rule;
    ``dropped``: 2-D modules with parameters that the eval-mode graph does not use (Inception-v3's
    auxiliary classifier).
    """

    def __init__(self, body: fx.GraphModule, patch_size: tuple[int, int], in_channels: int, *, depth_kernel: int,
                 depth_pool: int, min_spatial: int, inflate: str, adjustments: list[str], dropped: list[str]):
        super().__init__()
        self.body = body
        self.patch_size = tuple(patch_size)
        self.in_channels = in_channels
        self.depth_kernel, self.depth_pool, self.min_spatial, self.inflate = depth_kernel, depth_pool, min_spatial, inflate
        self.adjustments = list(adjustments)
        self.dropped = list(dropped)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        if volume.dim() != 5 or volume.shape[1] != self.in_channels or tuple(volume.shape[3:]) != self.patch_size:
            raise PatchbenchError(f"volumetric net takes (B, {self.in_channels}, N, {self.patch_size[0]}, {self.patch_size[1]}) "
                                  f"volumes, got {tuple(volume.shape)}")
        return self.body(volume)

    def extra_repr(self) -> str:
        return (f"patch_size={self.patch_size}, in_channels={self.in_channels}, depth_kernel={self.depth_kernel}, "
                f"depth_pool={self.depth_pool}, min_spatial={self.min_spatial}, inflate={self.inflate!r}")


# --------------------------------------------------------------------------------------------
# the spatial rule (see the module docstring)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    num = size + 2 * p - d * (k - 1) - 1
    if num < 0:
        return 0  # the window does not fit the padded input
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _conv_geometry(size: int, k: int, s: int, p: int, d: int, min_spatial: int) -> tuple[int, int]:
    """(stride, padding) of one spatial axis of a conv under the min_spatial rule."""
    target = min(min_spatial, size)
    if _conv_out(size, k, s, p, d) >= target:
        return s, p
    if _conv_out(size, k, 1, p, d) >= target:
        return 1, p
    return 1, math.ceil((target - size + d * (k - 1)) / 2)


def _pool_geometry(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool, min_spatial: int):
    """(kernel, stride, padding, dilation) of one spatial axis of a pooling under the rule."""
    target = min(min_spatial, size)
    if _pool_out(size, k, s, p, d, ceil_mode) >= target:
        return k, s, p, d
    if _pool_out(size, k, 1, p, d, ceil_mode) >= target:
        return k, 1, p, d
    return min(k, size - target + 1), 1, 0, 1


# --------------------------------------------------------------------------------------------
# module conversion


class _Options:
    def __init__(self, depth_kernel: int, depth_pool: int, min_spatial: int, inflate: str):
        self.depth_kernel, self.depth_pool, self.min_spatial, self.inflate = depth_kernel, depth_pool, min_spatial, inflate
        self.adjustments: list[str] = []


def _size_text(hw) -> str:
    return f"{hw[0]}×{hw[1]}"


def _convert_conv(m: nn.Conv2d, hw: tuple[int, int], name: str, opt: _Options) -> nn.Conv3d:
    k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
    if isinstance(m.padding, str):  # "valid" / "same"
        if m.padding == "valid":
            p = (0, 0)
        else:
            check(all(di * (ki - 1) % 2 == 0 for ki, di in zip(k, d)), f"{name}: padding='same' with an even kernel has no 3-D counterpart")
            p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    else:
        p = _pair(m.padding)
    geo = [_conv_geometry(hw[i], k[i], s[i], p[i], d[i], opt.min_spatial) for i in range(2)]
    s2, p2 = tuple(g[0] for g in geo), tuple(g[1] for g in geo)
    if (s2, p2) != (s, p):
        opt.adjustments.append(f"{name}: Conv2d {k[0]}×{k[1]} stride {s} padding {p} -> stride {s2} padding {p2} "
                               f"(input {_size_text(hw)}, min_spatial {opt.min_spatial})")
    dk = opt.depth_kernel
    factory = {"device": m.weight.device, "dtype": m.weight.dtype}
    common = dict(kernel_size=(dk, *k), stride=(1, *s2), dilation=(1, *d), groups=m.groups, bias=m.bias is not None,
                  padding_mode=m.padding_mode, **factory)
    # the weights are overwritten below unless inflate="none": skip their random initialization
    make = nn.Conv3d if opt.inflate == "none" else partial(nn.utils.skip_init, nn.Conv3d)
    if dk % 2:
        new = make(m.in_channels, m.out_channels, padding=(dk // 2, *p2), **common)
    else:
        make = DepthPadConv3d if opt.inflate == "none" else partial(nn.utils.skip_init, DepthPadConv3d)
        new = make(m.in_channels, m.out_channels, padding=(0, *p2), depth_pad=((dk - 1) // 2, dk // 2), **common)
    with torch.no_grad():
        if opt.inflate == "center":
            new.weight.zero_()
            new.weight[:, :, (dk - 1) // 2].copy_(m.weight)
        elif opt.inflate == "repeat":
            new.weight.copy_(m.weight.unsqueeze(2).expand_as(new.weight) / dk)
        if opt.inflate != "none" and m.bias is not None:
            new.bias.copy_(m.bias)
    return new


def _convert_pool(m: nn.Module, hw: tuple[int, int], name: str, opt: _Options) -> nn.Module:
    is_max = isinstance(m, nn.MaxPool2d)
    check(not (is_max and m.return_indices), f"{name}: max pooling with return_indices has no 3-D counterpart here")
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    p = _pair(m.padding)
    d = _pair(m.dilation) if is_max else (1, 1)
    geo = [_pool_geometry(hw[i], k[i], s[i], p[i], d[i], m.ceil_mode, opt.min_spatial) for i in range(2)]
    k2, s2, p2, d2 = (tuple(g[j] for g in geo) for j in range(4))
    if (k2, s2, p2, d2) != (k, s, p, d):
        opt.adjustments.append(f"{name}: {type(m).__name__} {k[0]}×{k[1]} stride {s} padding {p} -> {k2[0]}×{k2[1]} "
                               f"stride {s2} padding {p2} (input {_size_text(hw)}, min_spatial {opt.min_spatial})")
    if is_max:
        return PatchPool3d("max", k2, s2, p2, d2, m.ceil_mode, depth=opt.depth_pool)
    return PatchPool3d("avg", k2, s2, p2, 1, m.ceil_mode, m.count_include_pad, m.divisor_override, depth=opt.depth_pool)


def _convert_bn(m: nn.BatchNorm2d) -> nn.BatchNorm3d:
    ref = next(iter(m.parameters()), None)
    if ref is None:
        ref = m.running_mean if m.running_mean is not None else torch.empty(0)
    new = nn.BatchNorm3d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                         track_running_stats=m.track_running_stats, device=ref.device, dtype=ref.dtype)
    new.load_state_dict(m.state_dict())
    new.train(m.training)
    return new


def _is_stochastic_depth(m: nn.Module) -> bool:
    try:
        from torchvision.ops import StochasticDepth  # reason: torchvision takes seconds to import; only torchvision nets need it
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    return isinstance(m, StochasticDepth)


def _convert_module(m: nn.Module, x: torch.Tensor, name: str, opt: _Options) -> nn.Module:
    """The 3-D counterpart of leaf module ``m`` whose input (in g) is ``x``."""
    spatial = x.dim() == 5
    if isinstance(m, nn.Conv2d):
        check(spatial, f"{name}: Conv2d after the head's flatten")
        return _convert_conv(m, tuple(x.shape[-2:]), name, opt)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        check(spatial, f"{name}: pooling after the head's flatten")
        return _convert_pool(m, tuple(x.shape[-2:]), name, opt)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d((None, *_pair(m.output_size)))
    if isinstance(m, nn.AdaptiveMaxPool2d):
        check(not m.return_indices, f"{name}: adaptive max pooling with return_indices has no 3-D counterpart here")
        return nn.AdaptiveMaxPool3d((None, *_pair(m.output_size)))
    if isinstance(m, nn.BatchNorm2d):
        return _convert_bn(m)
    if isinstance(m, nn.Flatten):
        check(m.start_dim == 1 and m.end_dim == -1, f"{name}: only Flatten(1, -1) heads can be made per patch")
        return PerPatchFlatten()
    if isinstance(m, nn.Linear):
        check(x.dim() == 3, f"{name}: Linear on a {x.dim()}-D input; only Linear layers after the head's flatten "
                            "can act per patch")
        return copy.deepcopy(m)
    if isinstance(m, _KEPT) or _is_stochastic_depth(m):
        return copy.deepcopy(m)
    raise PatchbenchError(f"{name}: no 3-D counterpart known for {type(m).__name__}")


def _pool_module(target, args: tuple, kwargs: dict) -> nn.Module:
    """The nn.Module equivalent of a functional pooling call (positional/keyword arguments)."""
    if target is F.max_pool2d:
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        return nn.MaxPool2d(**dict(zip(names, args[1:])), **kwargs)
    if target is F.avg_pool2d:
        names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        return nn.AvgPool2d(**dict(zip(names, args[1:])), **kwargs)
    if target is F.adaptive_avg_pool2d:
        return nn.AdaptiveAvgPool2d(*args[1:], **kwargs)
    return nn.AdaptiveMaxPool2d(*args[1:], **kwargs)


_POOL_FUNCTIONS = (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d)


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with torchvision's StochasticDepth kept as a module (traced through, its
    ``self.training`` would be frozen at trace time)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _is_stochastic_depth(m) or super().is_leaf_module(m, qualname)


class _Converter(fx.Interpreter):
    """Runs the 2-D graph on an example volume, replacing each 2-D op by its 3-D counterpart
    as it goes (the replacement depends on the spatial size reaching it)."""

    def __init__(self, gm: fx.GraphModule, opt: _Options):
        super().__init__(gm)
        self.opt = opt
        self.modules: dict[str, nn.Module] = {}  # call_module target -> 3-D module
        self.functions: dict[fx.Node, nn.Module] = {}  # call_function / call_method node -> 3-D module
        self._node: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self._node = n
        return super().run_node(n)

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        if target in self.modules:  # a module called more than once (ResNet's shared ReLU)
            new = self.modules[target]
            if isinstance(new, (nn.Conv3d, PatchPool3d)):
                probe = _convert_module(self.fetch_attr(target), args[0], target, _Options(
                    self.opt.depth_kernel, self.opt.depth_pool, self.opt.min_spatial, "none"))
                check(repr(probe) == repr(new), f"{target}: called at two spatial sizes that need different 3-D layers")
        else:
            new = self.modules[target] = _convert_module(self.fetch_attr(target), args[0], target, self.opt)
        if args[0].is_meta and isinstance(new, nn.BatchNorm3d):  # shapes only (a parameter count): batch norm keeps
            return torch.empty_like(args[0])  # them, and its meta kernel is a Python decomposition (~3 ms a call)
        return new(*args, **kwargs)

    def call_function(self, target, args: tuple, kwargs: dict) -> Any:
        if target in _POOL_FUNCTIONS:
            new = _convert_module(_pool_module(target, args, kwargs), args[0], self._node.name, self.opt)
            self.functions[self._node] = new
            return new(args[0])
        if target is torch.flatten:
            return self._flatten(args, kwargs)
        check(target not in (F.conv2d, F.batch_norm, F.linear, F.dropout2d),
              f"{self._node.name}: functional {getattr(target, '__name__', target)} is not rewritten; use the nn module")
        return super().call_function(target, args, kwargs)

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        if target == "flatten":
            return self._flatten(args, kwargs)
        return super().call_method(target, args, kwargs)

    def _flatten(self, args: tuple, kwargs: dict) -> torch.Tensor:
        x, rest = args[0], list(args[1:])
        start = rest[0] if len(rest) > 0 else kwargs.get("start_dim", 0)
        end = rest[1] if len(rest) > 1 else kwargs.get("end_dim", -1)
        check(x.dim() == 5 and start == 1 and end == -1,
              f"{self._node.name}: only the head's flatten(x, 1) of a feature map can be made per patch")
        new = self.functions[self._node] = PerPatchFlatten()
        return new(x)


def _validate(patch_size, in_channels, depth_kernel, depth_pool, min_spatial, inflate) -> tuple[int, int]:
    ps = (patch_size, patch_size) if is_int(patch_size) else tuple(patch_size) if isinstance(patch_size, (tuple, list)) else None
    check(ps is not None and len(ps) == 2 and all(is_int(v) and v >= 1 for v in ps),
          f"patch_size must be a positive integer or a pair of them, got {patch_size!r}")
    check(is_int(in_channels) and in_channels >= 1, f"in_channels must be a positive integer, got {in_channels!r}")
    check(is_int(depth_kernel) and depth_kernel >= 1, f"depth_kernel must be an integer >= 1, got {depth_kernel!r}")
    check(is_int(depth_pool) and depth_pool >= 1 and depth_pool % 2 == 1,
          f"depth_pool must be an odd integer >= 1 (N is kept, Eq. 9), got {depth_pool!r}")
    check(is_int(min_spatial) and min_spatial >= 1, f"min_spatial must be an integer >= 1, got {min_spatial!r}")
    check(inflate in INFLATE, f"inflate must be one of {INFLATE}, got {inflate!r}")
    return ps


def to_volumetric(model2d: nn.Module, patch_size, in_channels: int, *, depth_kernel: int = DEFAULT_DEPTH_KERNEL,
                  depth_pool: int = 1, min_spatial: int = 1, inflate: str = "center") -> VolumetricNet:
    """g, the 3-D counterpart of the 2-D classifier ``model2d`` (BMVC 2023 Sec. 4.2, Eq. 5-9).

    ``patch_size`` (ph, pw) or an int; ``in_channels`` C: g takes volumes (B, C, N, ph, pw) and
    returns per-patch logits (B, N, k). ``depth_kernel``: the conv kernels' depth (any integer >= 1;
    1 = patches processed independently); ``depth_pool``: the pooling windows' depth (odd, N kept);
    ``min_spatial``: the stride/padding rule; ``inflate``: ``"center"``, ``"repeat"`` or
    ``"none"``. See the module docstring for each choice. ``model2d`` is not modified; g is on
    its device and dtype (a model on the ``meta`` device gives a meta g, for parameter counts).
    """
    ps = _validate(patch_size, in_channels, depth_kernel, depth_pool, min_spatial, inflate)
    check(isinstance(model2d, nn.Module), f"model2d must be an nn.Module, got {type(model2d).__name__}")
    ref = next(iter(model2d.parameters()), None)
    if ref is None:
        ref = next(iter(model2d.buffers()), torch.empty(0))
    opt = _Options(depth_kernel, depth_pool, min_spatial, inflate)
    was_training = model2d.training
    model2d.eval()
    try:
        try:
            graph = _Tracer().trace(model2d)
        except Exception as exc:
            raise PatchbenchError(f"cannot trace {type(model2d).__name__} with torch.fx: {str(exc).splitlines()[0]}") from None
        gm = fx.GraphModule(model2d, graph)
        conv = _Converter(gm, opt)
        example = torch.zeros(1, in_channels, 2, *ps, device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        with torch.no_grad():
            try:
                out = conv.run(example)
            except PatchbenchError:
                raise
            except Exception as exc:
                raise PatchbenchError(f"{type(model2d).__name__} does not run on {ps[0]}×{ps[1]} patches as a 3-D net: "
                                      f"{str(exc).splitlines()[0]}") from None
    finally:
        model2d.train(was_training)
    check(isinstance(out, torch.Tensor) and out.dim() == 3 and out.shape[:2] == (1, 2),
          f"{type(model2d).__name__}: the converted net must end in a per-patch head (B, N, k); "
          f"got {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")

    # the 3-D graph: same nodes, 3-D modules; functional pools / flattens become module calls
    root: dict[str, Any] = dict(conv.modules)
    for n in graph.nodes:
        if n.op == "get_attr":  # tensors used directly by forward (copied like every module)
            root[n.target] = copy.deepcopy(_getattr_path(model2d, n.target))
    for old, module in conv.functions.items():
        target = f"volumetric_{old.name}"
        root[target] = module
        with graph.inserting_after(old):
            repl = graph.create_node("call_module", target, (old.args[0],))
        old.replace_all_uses_with(repl)
        graph.erase_node(old)
    body = fx.GraphModule(root, graph, class_name=f"Volumetric{type(model2d).__name__}")
    body.graph.lint()
    used = set(conv.modules)
    dropped = sorted({name for name, m in model2d.named_modules()
                      if any(True for _ in m.parameters(recurse=False)) and name not in used
                      and not any(u == name or u.startswith(name + ".") for u in used)})
    g = VolumetricNet(body, ps, in_channels, depth_kernel=depth_kernel, depth_pool=depth_pool, min_spatial=min_spatial,
                      inflate=inflate, adjustments=opt.adjustments, dropped=dropped)
    return g.train(was_training)


def _getattr_path(obj: Any, target: str) -> Any:
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------------
# aggregation of the per-patch outputs


def aggregate(per_patch_logits: torch.Tensor, how: str = "mean-log-prob") -> torch.Tensor:
    """One score per image and class from g's per-patch logits (B, N, k) -> (B, k), a
    log-probability (each row's logsumexp is 0 for "mean-prob" and "vote").

    The paper trains with the sum of per-patch losses (PAL, Eq. 10) and does not say how the N
    patch outputs become one prediction; the rule is ``how``:

    * ``"mean-log-prob"`` (default): mean over the N patches of log_softmax — the log of the
      (unnormalized) geometric mean of the patch probabilities, a product-of-experts vote. Its
      argmax is the class with the smallest PAL with cross-entropy (Eq. 10), so prediction and
      training agree.
    * ``"mean-prob"``: log of the mean over patches of softmax (an arithmetic-mean ensemble; one
      confident patch weighs less than under the product).
    * ``"vote"``: majority of the per-patch argmax, ties broken by the mean probability: scores
      log((votes + mean prob) / (N + 1)), a distribution since votes sum to N and mean probs to 1.
      Not differentiable in the votes.
    """
    check(isinstance(per_patch_logits, torch.Tensor) and per_patch_logits.dim() == 3,
          f"per_patch_logits must be a (B, N, k) tensor, got {getattr(per_patch_logits, 'shape', type(per_patch_logits))}")
    check(how in AGGREGATIONS, f"unknown aggregation {how!r}; known: {', '.join(AGGREGATIONS)}")
    logp = torch.log_softmax(per_patch_logits, dim=-1)
    if how == "mean-log-prob":
        return logp.mean(1)
    n = per_patch_logits.shape[1]
    if how == "mean-prob":
        return torch.logsumexp(logp, dim=1) - math.log(n)
    votes = F.one_hot(per_patch_logits.argmax(-1), per_patch_logits.shape[-1]).sum(1).to(logp.dtype)
    return torch.log((votes + logp.exp().mean(1)) / (n + 1))


# --------------------------------------------------------------------------------------------
# parameter counts (Sec. 4.2)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_2d(arch: str, *, in_channels: int = 3, num_classes: int = 10, device: str | torch.device = "meta") -> nn.Module:
    """A randomly initialised 2-D network by name: a registered torchvision classifier (the four of
    Sec. 4.2; Inception-v3 without the auxiliary classifier) or a patchbench model; on the meta
    device by default (shapes only, nothing allocated)."""

    check(arch in MODELS, f"unknown model {arch!r}; known: {', '.join(sorted(MODELS))}")
    with torch.device(device):
        if MODELS[arch].pretrained:  # a torchvision classifier
            import torchvision  # reason: as above

            check(in_channels == 3, f"{arch} takes 3 input channels, got {in_channels}")
            kwargs = {"aux_logits": False, "init_weights": False} if arch == "inception_v3" else {}
            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
        net, _ = MODELS[arch].build(num_classes=num_classes, in_channels=in_channels, weights=None)
        return net


def parameter_increase(arch: str, depth_kernel: int = DEFAULT_DEPTH_KERNEL, patch_size=(16, 16), in_channels: int = 3,
                       num_classes: int = 10, *, depth_pool: int = 1, min_spatial: int = 1) -> tuple[int, int, int]:
    """(params of f, params of g, g - f) for ``arch`` (Sec. 4.2's comparison; the paper's numbers
    are :data:`PAPER_PARAMETER_INCREASE`). Counted from shapes on the meta device: nothing large is
    allocated. ``num_classes`` 10 (CIFAR-10, the paper's Fig. 2) changes f and g alike, not the
    increase."""
    check(is_int(num_classes) and num_classes >= 1, f"num_classes must be a positive integer, got {num_classes!r}")
    ps = _validate(patch_size, in_channels, depth_kernel, depth_pool, min_spatial, "none")
    return _counted_increase(arch, depth_kernel, ps, in_channels, num_classes, depth_pool, min_spatial)


@cache
def _meta_2d(arch: str, in_channels: int, num_classes: int) -> nn.Module:
    """:func:`build_2d` on the meta device, once per process for every depth and pooling counted (``list models``
    counts three depths of four nets; :func:`to_volumetric` does not modify its input)."""
    return build_2d(arch, in_channels=in_channels, num_classes=num_classes)


@cache
def _counted_increase(arch: str, depth_kernel: int, patch_size: tuple[int, int], in_channels: int, num_classes: int,
                      depth_pool: int, min_spatial: int) -> tuple[int, int, int]:
    """:func:`parameter_increase` on checked arguments, counted once per process (a conversion takes ~0.2 s; a
    model's registration cannot change, a name is registered once)."""
    net = _meta_2d(arch, in_channels, num_classes)
    g = to_volumetric(net, patch_size, in_channels, depth_kernel=depth_kernel, depth_pool=depth_pool, min_spatial=min_spatial,
                      inflate="none")
    p2, p3 = count_parameters(net), count_parameters(g)
    return p2, p3, p3 - p2
