"""Datasets: images in [0, 1] at the preset's size.

:mod:`.registry` (name -> loader, :func:`load_split`), :mod:`.sources` (a loaded split and
:func:`iterate` over it in batches) and :mod:`.readers` (the built-in datasets, registered on import).
"""

from patchbench.data.registry import DATASETS, DatasetInfo, get_dataset_info, load_split, register_dataset  # noqa: F401
from patchbench.data.sources import FolderImages, ImageSource, TensorImages, eval_indices, iterate  # noqa: F401
from patchbench.data.readers import cache_dir  # noqa: F401,E402  (importing it registers the built-in datasets)
