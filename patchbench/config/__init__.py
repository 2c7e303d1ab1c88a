"""Configuration: the preset schema (:mod:`.schema`), parsing of what a user types (:mod:`.parsing`) and cache
identity (:mod:`.keys`), below everything. A section's range checks belong to the layer whose registries name
its values (:mod:`patchbench.training.checks`, :mod:`patchbench.models.checks`); reading and validating whole
presets against the registries is :mod:`patchbench.presets`."""

from patchbench.config.parsing import (  # noqa: F401
    apply_overrides, build_dataclass, option_overrides, parse_lambda, parse_lambdas, parse_params,
)
from patchbench.config.schema import (  # noqa: F401
    AMP_DTYPES, AttackConfig, AuditConfig, DataConfig, DefenseConfig, EvasionConfig, ModelConfig, PatchFile, Preset, TrainConfig,
    VolumizeConfig,
)
from patchbench.config.keys import CACHE_SCHEMA, cache_hash, key_fields  # noqa: F401
from patchbench.util import stable_hash  # noqa: F401
