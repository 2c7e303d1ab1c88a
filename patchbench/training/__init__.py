"""Classifier training loops (standard now; madry, alp, aad, lat, volumized plug in here)."""

from patchbench.training.standard import train_standard  # noqa: F401
