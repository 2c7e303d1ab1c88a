"""Classifier training: one loop (:mod:`.loop`) for every objective (:mod:`.objectives`)."""

from patchbench.training.loop import accuracy, correct_count, train  # noqa: F401
from patchbench.training.objectives import OBJECTIVES, Objective  # noqa: F401
