"""Range checks of a preset's training section (``model.train``), the key in every message; the objective
and the syllabus metric are checked against their registries (:data:`~patchbench.training.objectives.OBJECTIVES`,
:data:`~patchbench.volumization.METRICS`)."""

from __future__ import annotations

from patchbench.config.schema import TrainConfig
from patchbench.errors import check, is_int, is_number
from patchbench.training.objectives import check_objective
from patchbench.volumization import METRICS


def validate_train(t: TrainConfig, where: str = "model.train") -> None:
    """Range checks of a TrainConfig; PatchbenchError naming the key."""
    check(is_int(t.epochs) and t.epochs >= 0, f"{where}.epochs must be an integer >= 0, got {t.epochs!r}")
    check(is_int(t.batch_size) and t.batch_size >= 1, f"{where}.batch_size must be an integer >= 1, got {t.batch_size!r}")
    check(is_number(t.lr) and t.lr > 0, f"{where}.lr must be a number > 0, got {t.lr!r}")
    check(t.optimizer in ("adam", "sgd", "rmsprop"), f"{where}.optimizer must be adam, sgd or rmsprop, got {t.optimizer!r}")
    check(t.schedule in ("onecycle", "constant", "step"), f"{where}.schedule must be onecycle, constant or step, got {t.schedule!r}")
    check(is_number(t.momentum) and 0 <= t.momentum < 1, f"{where}.momentum must be in [0, 1), got {t.momentum!r}")
    check(is_number(t.weight_decay) and t.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {t.weight_decay!r}")
    check(is_int(t.train_n) and t.train_n >= 0, f"{where}.train_n must be an integer >= 0, got {t.train_n!r}")
    check(is_int(t.test_n) and t.test_n >= 0, f"{where}.test_n must be an integer >= 0, got {t.test_n!r}")
    check(is_number(t.lr_decay) and 0 < t.lr_decay <= 1, f"{where}.lr_decay must be in (0, 1], got {t.lr_decay!r}")
    check(is_int(t.lr_decay_every) and t.lr_decay_every >= 1, f"{where}.lr_decay_every must be an integer >= 1, got {t.lr_decay_every!r}")
    check_objective(t.training, f"{where}.training")
    check(t.class_loss in ("soft-margin", "ce"), f"{where}.class_loss must be soft-margin or ce, got {t.class_loss!r}")
    check(is_number(t.eps) and 0 < t.eps <= 1, f"{where}.eps must be a number in (0, 1] (pixel scale; 8/255 = 0.0314), got {t.eps!r}")
    check(is_int(t.attack_steps) and t.attack_steps >= 1, f"{where}.attack_steps must be an integer >= 1, got {t.attack_steps!r}")
    check(t.attack_step_size is None or (is_number(t.attack_step_size) and t.attack_step_size > 0),
          f"{where}.attack_step_size must be a number > 0 or null, got {t.attack_step_size!r}")
    check(t.lat_region in ("background", "mask", "all"), f"{where}.lat_region must be background, mask or all, got {t.lat_region!r}")
    check(is_number(t.lat_keep_box) and 0 < t.lat_keep_box < 1, f"{where}.lat_keep_box must be in (0, 1), got {t.lat_keep_box!r}")
    check(is_number(t.lat_mask_threshold) and 0 <= t.lat_mask_threshold < 1,
          f"{where}.lat_mask_threshold must be in [0, 1), got {t.lat_mask_threshold!r}")
    if t.syllabus is not None:
        check(t.syllabus in METRICS, f"{where}.syllabus must be one of {', '.join(METRICS)} or null, got {t.syllabus!r}")
    check(t.syllabus_order in ("ascending", "descending"),
          f"{where}.syllabus_order must be ascending or descending, got {t.syllabus_order!r}")
    check(is_int(t.syllabus_window) and t.syllabus_window >= 1,
          f"{where}.syllabus_window must be an integer >= 1 (batches), got {t.syllabus_window!r}")
    check(is_int(t.syllabus_bins) and t.syllabus_bins >= 2, f"{where}.syllabus_bins must be an integer >= 2, got {t.syllabus_bins!r}")
    for key in ("alp_weight", "aad_alpha", "aad_beta"):
        v = getattr(t, key)
        check(is_number(v) and v >= 0, f"{where}.{key} must be a number >= 0, got {v!r}")
    check(t.kappa == "mean" or (is_number(t.kappa) and t.kappa >= 0), f"{where}.kappa must be 'mean' or a number >= 0, got {t.kappa!r}")
    check(is_int(t.cutout_holes) and t.cutout_holes >= 1, f"{where}.cutout_holes must be an integer >= 1, got {t.cutout_holes!r}")
    check(is_number(t.cutout_fraction) and 0 < t.cutout_fraction <= 1,
          f"{where}.cutout_fraction must be in (0, 1] (of the image side), got {t.cutout_fraction!r}")
    check(t.aad_lp_reduction in ("mean", "sum"), f"{where}.aad_lp_reduction must be mean or sum, got {t.aad_lp_reduction!r}")
