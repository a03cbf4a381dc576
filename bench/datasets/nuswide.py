"""``nuswide-zsl``: NUS-WIDE multi-label zero-shot learning, 925 seen + 81 unseen labels with word vectors.

On-disk layout (a simple conversion of the common ZSL release; no pickles, only text and .npy)::

    root/Flickr/...                              the images; paths below are relative to this folder
    root/ImageList/TrainImagelist.txt            one image path per line (NUS-WIDE's own lists; backslashes
    root/ImageList/TestImagelist.txt             are read as folder separators)
    root/labels/seen_labels.txt                  the seen label names, one per line (925 in the release)
    root/labels/unseen_labels.txt                the unseen label names, one per line (the 81 concepts)
    root/labels/train_labels.npy                 (S_train, N) 0/1 integers, one row per line of the image list;
    root/labels/test_labels.npy                  (S_test, N); columns are the seen labels then the unseen ones
    root/word_embedding/word_vectors.npy         (N, D) float word vectors in the same column order (D = 300
                                                 for the release's GloVe vectors)

Classes are seen then unseen (N = 925 + 81 = 1006 in the release); ``.unseen`` lists the unseen indices and
``.class_embeddings`` holds the word vectors. Splits: ``train`` and ``val`` (the test list).

Policy: in the train split the unseen columns are -1 (unknown), whatever the label file says: unseen labels are
not given to training (the zero-shot protocol). In ``val`` every column is given (ZSL: unseen columns; GZSL: all).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ._base import register_dataset
from ._common import ImageFileDataset, check_split, read_lines, require_dir, require_file

SPLITS = {"train": "Train", "val": "Test"}
EXPECTED = ("root/Flickr/ (images), root/ImageList/{Train,Test}Imagelist.txt, "
            "root/labels/{seen,unseen}_labels.txt, root/labels/{train,test}_labels.npy and "
            "root/word_embedding/word_vectors.npy (see bench/datasets/nuswide.py)")


def _load_npy(path: str) -> np.ndarray:
    require_file(path, "nuswide-zsl", EXPECTED)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"malformed NUS-WIDE file {path}: not a readable .npy array ({e})") from None


@register_dataset("nuswide-zsl")
class NUSWideZSL(ImageFileDataset):
    """NUS-WIDE zero-shot (seen + unseen labels, word vectors); see the module docstring for the layout."""

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False):
        name = check_split("nuswide-zsl", split, SPLITS)
        require_dir(root, "nuswide-zsl", EXPECTED)
        image_dir = require_dir(os.path.join(root, "Flickr"), "nuswide-zsl", EXPECTED)
        list_path = require_file(os.path.join(root, "ImageList", f"{name}Imagelist.txt"), "nuswide-zsl", EXPECTED)
        seen = read_lines(require_file(os.path.join(root, "labels", "seen_labels.txt"), "nuswide-zsl", EXPECTED))
        unseen = read_lines(require_file(os.path.join(root, "labels", "unseen_labels.txt"), "nuswide-zsl",
                                         EXPECTED))
        names = seen + unseen
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"malformed NUS-WIDE label lists in {os.path.join(root, 'labels')}: "
                             f"labels listed twice: {', '.join(dup[:5])}")
        files = [line.replace("\\", "/") for line in read_lines(list_path)]

        label_path = os.path.join(root, "labels", f"{name.lower()}_labels.npy")
        labels = _load_npy(label_path)
        if labels.ndim != 2 or labels.shape != (len(files), len(names)):
            raise ValueError(f"malformed NUS-WIDE file {label_path}: shape {labels.shape}, expected "
                             f"({len(files)}, {len(names)}) = (lines of {list_path}, seen + unseen labels)")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"malformed NUS-WIDE file {label_path}: values other than 0 and 1")
        vec_path = os.path.join(root, "word_embedding", "word_vectors.npy")
        vectors = _load_npy(vec_path)
        if vectors.ndim != 2 or vectors.shape[0] != len(names) or not np.issubdtype(vectors.dtype, np.number):
            raise ValueError(f"malformed NUS-WIDE file {vec_path}: shape {vectors.shape} ({vectors.dtype}), "
                             f"expected ({len(names)}, D) numbers, one row per seen then unseen label")

        super().__init__([os.path.join(image_dir, f) for f in files], img_size, train_augment)
        targets = labels.astype(np.float32)
        if split == "train":
            targets[:, len(seen):] = -1.0  # unseen labels are withheld from training
        self.class_names = names
        self.targets = targets
        self.multilabel = True
        self.unseen = tuple(range(len(seen), len(names)))
        self.class_embeddings = vectors.astype(np.float32)
