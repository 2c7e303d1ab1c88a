"""The preset schema: frozen dataclasses, no I/O and no validation (see :mod:`.parsing`).

A preset is a value: a changed one is a new one, made with :func:`dataclasses.replace`
(``replace(preset, data=replace(preset.data, eval_n=100))``; :meth:`Preset.with_train` for the
model's training settings), never by assigning to a field — a preset handed to one step cannot be
changed under another.

A preset says which paper and which experiment it belongs to (``paper``, ``experiment``); the
generic fields below describe data, model, training, attacks and defenses. Every field of a
config names its cached artifacts unless it says otherwise (``not_key`` / ``key_when``, see
:mod:`.keys`); a new field needs a default, so that no cached artifact is renamed. Sections that only
one paper understands (e.g. an adaptive attack) are declared by that paper's plugin
(:attr:`patchbench.papers.Paper.sections`) and land in ``Preset.extra``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from patchbench.config.keys import key_when, not_key

AMP_DTYPES = {None: None, "bf16": "bfloat16", "fp16": "float16"}  # model.amp -> torch dtype name

@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion-mnist"
    root: str | None = None  # None: the dataset's own search order (see patchbench.data)
    image_size: int = 64
    eval_split: str = "test"
    eval_n: int = 2000  # fixed, seeded evaluation subset; 0 = the whole split
    eval_seed: int = 0
    ssim_n: int = 1000  # clean images on which SSIM(input, defended) is measured
    batch_size: int = 500
    num_workers: int = 0
    # check the files against the dataset's official checksums before reading them (CIFAR-10/100's MD5s);
    # false: a copy of one's own (re-encoded), still read by the restricted unpickler (patchbench.data.safe_pickle)
    verify: bool = not_key(default=True)


def _lat(t: "TrainConfig") -> bool:
    return str(t.training).startswith("lat")


def _syllabus(t: "TrainConfig") -> bool:
    return t.syllabus is not None


def _cutout(t: "TrainConfig") -> bool:
    return str(t.training) == "cutout"


@dataclass(frozen=True)
class TrainConfig:
    """Classifier training by the one loop of :mod:`patchbench.training` (every objective).

    ``training`` names the objective (``raw``, ``madry``, ``alp``, optionally ``+aad``; see
    :data:`patchbench.training.OBJECTIVES`). Optimizer and schedule apply to every objective.
    """

    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd | rmsprop
    lr: float = 3e-3  # max lr of the one-cycle schedule; the (initial) lr of constant / step
    schedule: str = "onecycle"  # onecycle | constant | step (lr *= lr_decay every lr_decay_every epochs)
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    train_n: int = 0  # 0 = the whole training split; >0 = a seeded subset (tests, quick runs)
    # the trained model's test accuracy (its metadata, the sweep's model line) on a seeded subset of test_n images
    # of the evaluation split, 0 = all of it; not part of the model's identity (the weights do not depend on it)
    test_n: int = not_key(default=0)
    lr_decay: float = 0.94  # step schedule (e.g. 0.045 decayed x0.94 every 2 epochs)
    lr_decay_every: int = 2  # epochs
    training: str = "raw"  # the objective: raw | madry | alp (each optionally +aad) | lat | pal | cutout
    class_loss: str = "ce"  # L_c: ce | soft-margin (multi-label soft margin on one-hot targets)
    eps: float = 0.3  # L-inf radius of the training PGD, [0, 1] pixel scale (MNIST 0.3; CIFAR 8/255)
    attack_steps: int = 40  # PGD steps while training (Madry et al. MNIST: 40; CIFAR: 7)
    attack_step_size: float | None = None  # None: 2.5 * eps / attack_steps
    alp_weight: float = 0.5  # λ of ALP's mean squared logit difference (Kannan et al. 2018)
    aad_alpha: float = 0.01  # α of the rectification loss L_r (AAD)
    aad_beta: float = 0.01  # β of the preservation loss L_p (AAD)
    aad_lp_reduction: str = "mean"  # L_p over the CAM grid: mean | sum
    kappa: Any = "mean"  # attention threshold κ: "mean" (per image) or a number
    # localized adversarial training (training: lat, AdvML 2019 Algorithm 1): where the training PGD may
    # change pixels (patchbench.attacks.pgd.allowed_pixels): background (a centred box kept) | mask
    lat_region: str = key_when(_lat, default="background")
    lat_keep_box: float = key_when(_lat, default=0.5)  # side of the kept centred box, as a fraction of the image side
    lat_mask_threshold: float = key_when(_lat, default=0.1)  # region mask: pixels brighter than this are the object (kept)
    # curriculum syllabus (BMVC 2023 Sec. 4.3): order each window of syllabus_window batches by a
    # metric of patchbench.volumization.METRICS (None: plain random order)
    syllabus: str | None = None
    syllabus_order: str = key_when(_syllabus, default="ascending")  # ascending (simple first) | descending
    syllabus_window: int = key_when(_syllabus, default=8)  # batches per window (inside one batch the order cannot matter)
    syllabus_bins: int = key_when(_syllabus, default=256)  # histogram bins of the metric
    # Cutout fine-tuning (training: cutout, PatchCleanser's recipe; patchbench.training.cutout): holes per image
    # and their side as a fraction of the image side (the authors' --n_holes 2, --cutout_size 128 at 224 px)
    cutout_holes: int = key_when(_cutout, default=2)
    cutout_fraction: float = key_when(_cutout, default=128 / 224)


@dataclass(frozen=True)
class VolumizeConfig:
    """A volumetric model g (BMVC 2023 Sec. 4): the image is volumized (Eq. 3-4) and classified by the
    3-D counterpart of ``model.arch`` (Eq. 5-9) with one output per patch, aggregated per image.
    See :mod:`patchbench.volumization` and :mod:`patchbench.models.volumetric`."""

    patch: int = 16  # p_h = p_w (BMVC Sec. 5: 16x16 for all syllabi)
    metric: str = "entropy"  # the ranking metric m (Table 1): entropy | mi | kl | psnr | max_norm | joint_entropy | mse
    order: str = "ascending"  # ascending | descending
    bins: int = 256  # histogram bins of the information metrics
    reference: str = "lowest-entropy"  # reference patch of the distance metrics
    pad: str = "none"  # when p does not divide H or W: none (error) | zero | reflect | replicate
    depth_kernel: int = 3  # depth of the 3-D kernels (the paper's "3x3xN" is ambiguous; 3 fits its parameter counts best)
    depth_pool: int = 1  # depth window of the 3-D pooling (odd; 1 = per patch)
    min_spatial: int = 1  # strides/windows shrink so no feature map gets smaller than this
    inflate: str = "center"  # how 2-D weights seed the 3-D kernels: center | repeat | none
    aggregation: str = "mean-log-prob"  # per-patch outputs -> one prediction: mean-log-prob | mean-prob | vote


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "small_vgg"
    # torchvision weights name ("DEFAULT", "IMAGENET1K_V1"), a path to a state dict, or None.
    # None with a small net means: train it (train-model) and cache the checkpoint; "scratch": train
    # any architecture (torchvision ones too) from random initialization.
    weights: str | None = None
    channels_last: bool = True
    # autocast dtype of the classifier's prediction passes in evaluation: bf16 | fp16 | None (fp32).
    # Attacks, the defenses' own model passes (saliency) and training stay in fp32; a set value is
    # part of each cell's identity, so fp32 and amp cells never mix; not the model's (same weights).
    amp: str | None = not_key(default=None)
    train: TrainConfig = field(default_factory=TrainConfig)
    volumize: VolumizeConfig | None = None  # set: the volumetric counterpart g of arch (BMVC 2023)


@dataclass(frozen=True)
class AttackConfig:
    """A patch attack trained against the preset's classifier (x' = (1 - m) ⊙ x + m ⊙ δ)."""

    name: str = "lavan"
    # square side in pixels; a patch's identity holds its one size
    sizes: list[int] = not_key(default_factory=lambda: [6, 8, 10])
    target: int = 0
    placement: str = "top-right"  # top-right | top-left | bottom-left | bottom-right | center | random (per image)
    margin: int = 2  # pixels between the patch and the image corner
    random_placement: bool = False  # train at random locations (tested at `placement`)
    # a placement mask (patchbench.attacks.placement): box:T,L,H,W | quadrant:NAME | an image file; the
    # patch is trained and tested inside it (null: the whole image)
    region: str | None = None
    steps: int = 200  # optimizer steps
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd (momentum) | adam | sign (signed gradient); see attacks/lavan.py
    schedule: str = "multistep"  # multistep (lr_milestones, lr_gamma) | cosine (lr -> lr/100)
    lr: float = 0.05
    momentum: float = 0.9
    lr_milestones: list[int] = field(default_factory=list)  # steps at which lr *= lr_gamma
    lr_gamma: float = 0.1
    seed: int = 0
    seeds: list[int] = field(default_factory=list)  # one patch per seed (empty: just `seed`)
    restarts: int = 1  # random starts optimised together; the best on select_n held-out training images is kept
    select_n: int = 500  # held-out training images (outside train_pool) that choose among restarts
    train_pool: int = 10000  # training images the patch samples its batches from
    success_n: int = 1000  # training images the final success rate is measured on
    # expectation over transformations while training: each image draws a location
    # (random_placement), a rotation and a scale
    rotation: float = 0.0  # max |angle| in degrees of the random rotation (0 = none)
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])  # random factor on the side


@dataclass(frozen=True)
class PatchFile:
    """An external patch (a PNG or a tensor file, :mod:`patchbench.attacks.patch_files`) a sweep applies:
    an entry of a preset's ``patches:`` list (or a bare path), or ``evaluate --patch`` with its options.
    Unset placement fields keep what the file records (``placement`` a corner, center, random or affine;
    ``region`` a placement mask; ``seed`` a random or affine placement's seed)."""

    file: str = ""
    placement: str | None = None
    margin: int | None = None
    region: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class DefenseConfig:
    name: str = "lgs"
    params: dict[str, Any] = field(default_factory=dict)
    lambdas: list[float] = field(default_factory=lambda: [2.3])


@dataclass(frozen=True)
class EvasionConfig:
    """A pixel-space L∞ evasion attack column (FGSM, PGD-k, CW-k, StepLL, A3, ...).

    ``name`` is an attack of the registry; ``eps`` in [0, 1] pixel units; ``steps``/``step_size``
    for iterative attacks (None: the attack's default); ``params`` any other constructor argument
    (sigma, ...); ``column`` the table's column label (default: the attack's, e.g. PGD10:
    :func:`patchbench.attacks.evasion_label`);
    ``trainings``: evaluate only these models (empty: all).
    """

    name: str = "pgd"
    eps: float = 0.3
    steps: int | None = None
    step_size: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    column: str | None = None
    seed: int = 0
    trainings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AuditConfig:
    """The attack-failure audit run after every patch-defense sweep (:mod:`patchbench.sections.audit`):
    ``n`` evaluation images per cell for the input-level indicators, ``probes`` random perturbations
    per image for unstable predictions (Pintor et al. 2022 use γ = 100). No artifact is named by it:
    the verdicts record both, and a cell audited with other values is probed again."""

    n: int = not_key(default=32)
    probes: int = not_key(default=20)


@dataclass(frozen=True)
class Preset:
    name: str
    paper: str  # a key of patchbench.papers.PAPERS
    experiment: str  # a key of patchbench.papers.all_experiments(): patch-defense | evasion | a paper's own
    description: str = ""
    tables: list[str] = field(default_factory=list)  # paper tables this preset rebuilds
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attacks: list[AttackConfig] = field(default_factory=list)  # patch attacks (patch-defense)
    defenses: list[DefenseConfig] = field(default_factory=list)
    trainings: list[str] = field(default_factory=list)  # evasion: one model per training objective
    # evasion: the training seeds (model.train.seed) of an objective's models, one model each; an
    # objective not named here trains once, with model.train.seed
    training_seeds: dict[str, list[int]] = field(default_factory=dict)
    evasion: list[EvasionConfig] = field(default_factory=list)  # evasion: the attack columns
    patches: list[PatchFile] = field(default_factory=list)  # external patch files applied beside the trained ones
    notes: list[str] = field(default_factory=list)  # footnotes printed under tables
    audit: AuditConfig = field(default_factory=AuditConfig)  # the attack-failure audit's sample sizes
    extra: dict[str, Any] = field(default_factory=dict)  # the paper's own sections (Paper.sections)
    source: str = ""  # where it was loaded from

    def seeds_of(self, training: str) -> list[int]:
        """The training seeds of ``training``'s models (evasion): ``training_seeds``, else model.train.seed."""
        return list(self.training_seeds.get(training) or [self.model.train.seed])

    def with_train(self, **changes) -> "Preset":
        """This preset with ``model.train``'s fields ``changes`` replaced."""
        return dataclasses.replace(self, model=dataclasses.replace(
            self.model, train=dataclasses.replace(self.model.train, **changes)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d
