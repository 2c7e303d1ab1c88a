"""Configuration: the preset schema (:mod:`.schema`), parsing of what a user types (:mod:`.parsing`)
and the range checks of its volumetric section (:mod:`.checks`; the training section is checked by
:mod:`patchbench.training.checks`). Reading and validating whole presets against
the registries is :mod:`patchbench.presets`."""

from patchbench.config.checks import AMP_DTYPES, validate_volumize  # noqa: F401
from patchbench.config.parsing import (  # noqa: F401
    apply_overrides, build_dataclass, option_overrides, parse_lambda, parse_lambdas, parse_params,
)
from patchbench.config.schema import (  # noqa: F401
    AttackConfig, AuditConfig, DataConfig, DefenseConfig, EvasionConfig, ModelConfig, PatchFile, Preset, TrainConfig,
    VolumizeConfig,
)
from patchbench.config.keys import CACHE_SCHEMA, cache_hash, key_fields  # noqa: F401
from patchbench.util import stable_hash  # noqa: F401
