"""Configuration: the preset schema (:mod:`.schema`) and its loading and validation (:mod:`.loading`)."""

from patchbench.config.loading import (  # noqa: F401
    apply_overrides, build_dataclass, check, is_int, is_number, load_preset, option_overrides, parse_lambda, parse_lambdas,
    parse_params,
    preset_from_dict, preset_names, preset_paths, validate, validate_train, validate_volumize,
)
from patchbench.config.schema import (  # noqa: F401
    AttackConfig, DataConfig, DefenseConfig, EvasionConfig, ModelConfig, Preset, TrainConfig, VolumizeConfig,
)
from patchbench.util import stable_hash  # noqa: F401
