"""Model registry (timm style): name -> constructor, plus the [0, 1]-input Classifier wrapper."""

from patchbench.models.build import build_classifier  # noqa: F401
from patchbench.models.registry import MODELS, ModelSpec, register_model  # noqa: F401
from patchbench.models.wrapper import Classifier  # noqa: F401

# importing the modules registers their models
from patchbench.models import imagenet, mini_inception, small  # noqa: E402,F401
