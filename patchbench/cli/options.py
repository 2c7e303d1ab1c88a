"""The commands' options, declared once (Typer's ``Annotated`` style): those several commands
share, then each command's own (named CommandOption), so the command modules read as commands; :func:`load` turns
the preset options into the :class:`~patchbench.config.Preset` they select. The options that go before the command
(``--version``, ``--deterministic``, ...) are the app's own: :mod:`patchbench.cli.app`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

Preset = Annotated[str, typer.Option("--preset", "-p", help="Preset name (see `patchbench list presets`) or a preset YAML file.")]
Results = Annotated[Path, typer.Option("--results", help="Results directory: cells/ and predictions/ (parquet), artifacts/ (cached models, patches).")]
Device = Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda[:i]; default: the preset's (auto = cuda if available).")]
DataRoot = Annotated[Optional[str], typer.Option("--data-root", help="Dataset directory (overrides the preset and the dataset's search order).")]
Weights = Annotated[Optional[str], typer.Option("--weights", help="Model weights: a torchvision weights name (DEFAULT, IMAGENET1K_V1) or a state-dict file.")]
Set = Annotated[Optional[List[str]], typer.Option("--set", help="Override any preset field, e.g. --set data.eval_n=500 or --set attacks.0.steps=50 (repeatable).")]
Param = Annotated[Optional[List[str]], typer.Option("--param", help="Defense parameter key=value (repeatable), e.g. --param window=15 --param space=normalized; see `patchbench list defenses`.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars on long steps.")]
Amp = Annotated[Optional[str], typer.Option("--amp", help="bf16 or fp16: the classifier's prediction passes in evaluation under torch.autocast (attacks, saliency and training stay fp32); stored as separate cells.")]
Lam = Annotated[str, typer.Option("--lam", help="Smoothing factor λ >= 0 (ignored by defenses without one).")]
AutoDevice = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:i].")]  # defend, background-attack: no preset's device

# background-attack (AdvML 2019 Sec. 3)
BgImages = Annotated[Path, typer.Option("--images", help="Folder of the images (PNG/JPEG).")]
BgBoxes = Annotated[Path, typer.Option("--boxes", help="CSV with columns file,label,x0,y0,x1,y1: the object's box per image (kept unaltered).")]
BgOutDir = Annotated[Path, typer.Option("--out", "-o", help="Directory for the adversarial PNGs and background-attack.md/.csv.")]
BgModel = Annotated[str, typer.Option("--model", help="A torchvision ImageNet model (see `patchbench list models`).")]
BgWeights = Annotated[str, typer.Option("--weights", help="torchvision weights name, a state-dict file, or none (random-init stand-in).")]
BgDataset = Annotated[str, typer.Option("--dataset", help="Whose normalization and classes the model uses.")]
BgImageSize = Annotated[int, typer.Option("--image-size", help="Model input size (Inception-v3: 299).")]
BgEps = Annotated[float, typer.Option("--eps", help="L-inf bound on background pixels, [0, 1] scale.")]
BgSteps = Annotated[int, typer.Option("--steps", help="PGD steps.")]
BgStepSize = Annotated[Optional[float], typer.Option("--step-size", help="PGD step (default 2.5·eps/steps).")]
BgSeed = Annotated[int, typer.Option("--seed")]
BgBatchSize = Annotated[int, typer.Option("--batch-size")]

# sweep: shards and cluster jobs
Shard = Annotated[Optional[str], typer.Option("--shard", help="i/n: compute only slice i of n of the grid's missing cells (partitioned by run id; run shards in parallel, e.g. as a job array, into one results directory).")]
Executor = Annotated[Optional[str], typer.Option("--executor", help="slurm: submit --shards jobs as a SLURM array through submitit; local: the same jobs as local processes.")]
Shards = Annotated[int, typer.Option("--shards", help="Number of shards (jobs) with --executor.")]
Partition = Annotated[Optional[str], typer.Option("--partition", help="SLURM partition (--executor slurm).")]
GpusPerNode = Annotated[int, typer.Option("--gpus-per-node", help="GPUs per job (--executor slurm).")]
TimeoutMin = Annotated[int, typer.Option("--timeout-min", help="Time limit per job in minutes (--executor).")]
ArrayParallelism = Annotated[int, typer.Option("--array-parallelism", help="At most this many jobs at once (--executor slurm).")]

# each command's own options
TrainModelForce = Annotated[bool, typer.Option("--force", help="Retrain even if a cached checkpoint exists.")]
TrainModelTraining = Annotated[Optional[str], typer.Option("--training", help="Training objective: raw, madry, madry+aad, alp or alp+aad (default: the preset's). Checkpoints every epoch; a killed run resumes.")]
TrainModelNproc = Annotated[int, typer.Option("--nproc", min=1, help="Train data-parallel in this many processes (runs itself under torchrun: gloo on CPU, one GPU each with NCCL). The same as `torchrun --nproc_per_node K -m patchbench train-model ...`.")]
TrainPatchAttack = Annotated[str, typer.Option("--attack", "-a", help="Patch attack (see `patchbench list attacks`).")]
TrainPatchSize = Annotated[int, typer.Option("--size", "-s", help="Patch side in pixels, at the preset's image size (e.g. 52 at 400 px).")]
TrainPatchTarget = Annotated[Optional[int], typer.Option("--target", "-t", help="Target class index (default: the preset's).")]
TrainPatchSteps = Annotated[Optional[int], typer.Option("--steps", help="Optimizer steps (default: the preset's).")]
TrainPatchSeed = Annotated[Optional[int], typer.Option("--seed", help="Random seed of the patch init and batches.")]
TrainPatchOutFile = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the patch here (.pt, plus .png and .json beside it); default: cached under <results>/artifacts/patches.")]
TrainPatchForce = Annotated[bool, typer.Option("--force", help="Retrain even if the cached patch exists.")]
DefendOutDir = Annotated[Path, typer.Option("--out", "-o", help="Directory for the defended PNGs (same file stems).")]
DefendDefense = Annotated[str, typer.Option("--defense", "-d", help="Defense (see `patchbench list defenses`).")]
DefendPreset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Take the defense's parameters and the normalization from this preset.")]
DefendSaveMaps = Annotated[bool, typer.Option("--save-maps", help="Also write the gradient map g(x) as DIR/maps/<stem>.png.")]
EvaluatePatch = Annotated[Optional[Path], typer.Option("--patch", help="Patch file: a PNG (exact when exported by patchbench, else its 8-bit pixels) or a tensor file (.pt/.pth, read with weights_only=True); without it the clean cell is evaluated.")]
EvaluatePlacement = Annotated[Optional[str], typer.Option("--placement", help="Where the patch goes: top-right, top-left, bottom-right, bottom-left, center, random (per image, seeded) or affine (ImageNet-Patch's random rotation/translation/scale); default: the file's own.")]
EvaluateMargin = Annotated[Optional[int], typer.Option("--margin", help="Pixels between a corner placement and the image corner (default: the file's own).")]
EvaluateRegion = Annotated[Optional[str], typer.Option("--region", help="Placement mask: box:TOP,LEFT,HEIGHT,WIDTH, quadrant:NAME (top-left ... center) or a mask image (white = allowed); the patch stays inside it.")]
EvaluatePlacementSeed = Annotated[Optional[int], typer.Option("--placement-seed", help="Seed of a random or affine placement (image i's place is drawn from the seed and i).")]
ExportAttack = Annotated[Optional[str], typer.Option("--attack", help="The cached patch's attack (with --preset and --size).")]
ExportSize = Annotated[Optional[int], typer.Option("--size", help="The cached patch's side in pixels.")]
ExportSeed = Annotated[Optional[int], typer.Option("--seed", help="The cached patch's seed (default: the attack entry's first).")]
ExportTarget = Annotated[Optional[int], typer.Option("--target", help="Pick the attack entry with this target (presets with one entry per target).")]
ExportFrom = Annotated[Optional[str], typer.Option("--from", help="A cached patch artifact to export as it is, instead of --preset/--attack/--size: its .pt (with its .json), or its name or cache key under --results.")]
ExportOut = Annotated[Path, typer.Option("--out", "-o", help="NAME.png (its sidecar NAME.json beside it), or a folder (<attack>-<size>px-<content id>.png and .json in it).")]
EvaluateDefense = Annotated[str, typer.Option("--defense", "-d", help="Defense, or none.")]
SweepDefenses = Annotated[Optional[str], typer.Option("--defenses", help="Comma list of defenses (default: the preset's). 'none' is always included.")]
SweepLambdas = Annotated[Optional[str], typer.Option("--lambdas", help="start:stop[:step] (step 0.4 by default; 1.5:3.5 -> 1.5,1.9,...,3.5) or a comma list; default: the preset's.")]
SweepPatches = Annotated[Optional[List[str]], typer.Option("--patches", help="Patch files to evaluate (repeat or comma-separate); default: the preset's attacks, trained or cached.")]
SweepSeeds = Annotated[Optional[str], typer.Option("--seeds", help="Comma list of patch seeds: every patch is trained once per seed (default: the preset's).")]
TablePreset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Whose cells to show (default: the paper preset if stored, else the demo).")]
TableFmt = Annotated[str, typer.Option("--format", "-f", help="rich, markdown, csv or latex.")]
TableOutFile = Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the table to this file.")]
ReproducePresetScale = Annotated[str, typer.Option("--preset-scale", help="demo (Fashion-MNIST, CPU minutes) or paper (the paper's presets: GPU + the paper's data).")]
ReproduceOutDir = Annotated[Optional[Path], typer.Option("--out", "-o", help="Where tables (.md), figures (.png) and provenance.json go; default RESULTS/SCALE.")]
ReportOutDir = Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder of the reproduction (tables, figures, provenance.json) and of the report; default RESULTS/SCALE.")]
AllowCpu = Annotated[bool, typer.Option("--allow-cpu", envvar="ALLOW_CPU", help="Run paper scale without a GPU, knowingly (days on a CPU); also ALLOW_CPU=1.")]
ClaimsFmt = Annotated[str, typer.Option("--format", "-f", help="rich, markdown or json.")]
ClaimsScale = Annotated[str, typer.Option("--preset-scale", help="demo or paper: whose presets' cells the claims are checked on.")]
PlotOutFile = Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")]

# arguments
ListWhat = Annotated[str, typer.Argument(help="models, attacks, defenses, datasets, presets, papers, tables, figures, trainings, or volumetric (BMVC 2023 3-D parameter counts vs the paper's).")]
DefendInputs = Annotated[List[Path], typer.Argument(help="PNG/JPEG files or directories (every image inside).")]
TableName = Annotated[str, typer.Argument(help="Table to rebuild (see `patchbench list tables`).")]
ReproducePaper = Annotated[List[str], typer.Argument(help="Papers to reproduce (see `patchbench list papers`), or all.")]
ReproduceOnly = Annotated[Optional[List[str]], typer.Option("--only", help="Run only these presets of the papers' scale (repeatable), e.g. --only demo-fmnist; default: all of them.")]
ClaimsPaper = Annotated[Optional[str], typer.Argument(help="One paper (see `patchbench list papers`); omitted: every paper.", show_default=False)]
PlotName = Annotated[str, typer.Argument(help="Figure (see `patchbench list figures`), e.g. lambda-curve or adaptive.")]
PlotParams = Annotated[Optional[List[str]], typer.Option("--param", help="Figure option key=value, e.g. --param patch_px=8.")]


def load(preset: str, sets=None, device=None, data_root=None, weights=None, extra=None, amp=None):
    """The preset the options select: its name or file, ``--set`` items and the options that stand for overrides."""
    from patchbench.config import option_overrides  # reason: `patchbench --help` imports no torch
    from patchbench.presets import load_preset  # reason: as above

    return load_preset(preset, option_overrides(sets, device=device, data_root=data_root, weights=weights, amp=amp) + list(extra or []))
