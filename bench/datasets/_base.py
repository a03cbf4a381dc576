"""The dataset contract (``HeadDataset``) and the registry every dataset module registers in."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..registry import Registry

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register


class HeadDataset(Dataset):
    """Base class of every dataset. Subclasses fill the attributes and implement ``__len__``/``__getitem__``.

    Attributes:
        class_names: the N class names, in target order (words: they feed word queries).
        multilabel: True for multi-hot targets, False for single-label class indices.
        targets: all targets at once, (S, N) float32 multi-hot or (S,) int64, for statistics and metrics.
        unseen: indices of the classes held out for zero-shot evaluation (empty when none).
        skipped: (path, reason) of the images that failed to decode and were skipped, reported by the runner.
        spec: the canonical spec string (the ``dataset`` column of results).
        class_embeddings: (N, D) float32 word vectors shipped with the data (NUS-WIDE's), or None: then word
            queries come from ``bench.datasets.words.embed_class_names(class_names)``.
        interpolation: how images are resized ("bilinear", "bicubic"): a pretrained backbone's own, set by
            ``create_dataset``; datasets that draw at the target size do not resize.
    """

    class_names: List[str]
    multilabel: bool = True
    targets: np.ndarray
    unseen: Sequence[int] = ()
    spec: str = ""
    class_embeddings: Optional[np.ndarray] = None
    interpolation: str = "bilinear"
    fingerprint: str = ""  # what the data depend on beyond the spec (a font's version...): part of the feature key

    def __init__(self):
        self.skipped: List[tuple] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
