"""``imagefolder``: single-label images in the ImageNet layout, one folder per class.

On-disk layout::

    root/train/<class>/*.JPEG (or .jpg, .png, ...)
    root/val/<class>/*.JPEG

Classes are the sub-folders of ``root/train``, sorted by name; their names are the folder names (ImageNet's are
WordNet ids such as n01440764, which are no words: give word queries other names if they need them). A class
folder of ``val`` that ``train`` lacks is an error; a class without val images is fine. Splits: ``train``, ``val``.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ._base import register_dataset
from ._common import ImageFileDataset, check_split, list_images, require_dir

SPLITS = {"train": "train", "val": "val"}
EXPECTED = "root/train/<class>/*.JPEG and root/val/<class>/*.JPEG (the ImageNet layout)"


def _class_dirs(folder: str):
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


@register_dataset("imagefolder")
class ImageFolder(ImageFileDataset):
    """Single-label ImageNet-layout folders; see the module docstring."""

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False):
        name = check_split("imagefolder", split, SPLITS)
        require_dir(root, "imagefolder", EXPECTED)
        train_dir = require_dir(os.path.join(root, "train"), "imagefolder", EXPECTED)
        classes = _class_dirs(train_dir)
        if not classes:
            raise ValueError(f"imagefolder: no class folders in {train_dir!r}; expected {EXPECTED}")
        split_dir = require_dir(os.path.join(root, name), "imagefolder", EXPECTED)
        extra = [c for c in _class_dirs(split_dir) if c not in classes]
        if extra:
            raise ValueError(f"imagefolder: {split_dir!r} has class folders that {train_dir!r} lacks: "
                             f"{', '.join(extra[:5])}")
        paths, targets = [], []
        for k, c in enumerate(classes):
            folder = os.path.join(split_dir, c)
            if os.path.isdir(folder):
                files = list_images(folder)
                paths += files
                targets += [k] * len(files)
        if not paths:
            raise ValueError(f"imagefolder: no images in {split_dir!r}; expected {EXPECTED}")
        super().__init__(paths, img_size, train_augment)
        self.class_names = classes
        self.targets = np.asarray(targets, dtype=np.int64)
        self.multilabel = False
