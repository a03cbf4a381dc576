"""``openimages``: Open Images image-level labels (positive and negative), read from the official CSV files.

On-disk layout (file names as the V4-V6 downloads; a leading ``oidv6-`` / ``oidv4-`` is also accepted)::

    root/class-descriptions.csv                        LabelName,DisplayName (header row optional: V4 has none)
    root/train-annotations-human-imagelabels.csv       ImageID,Source,LabelName,Confidence (with this header)
    root/validation-annotations-human-imagelabels.csv
    root/train/<ImageID>.jpg
    root/validation/<ImageID>.jpg

Classes are the rows of the class-descriptions file, in file order (9,605 in the ML-Decoder release; the option
``descriptions`` names another file, e.g. a trainable subset in the same format); class names are the display
names. Images are those with at least one label row of a class. Targets: Confidence 1 is positive (1), 0 is a verified
negative (0), a class without a row is unknown (-1; ``unlabeled="negative"`` makes it 0 instead). A class both
positive and negative for one image (from different sources) counts as positive. Label rows whose LabelName is
not a class are ignored (counted in ``.ignored_rows``). Targets are stored sparse (Open Images has 9,605 classes
and millions of images); ``.targets`` builds the dense (S, N) matrix on demand.

Splits: ``train`` and ``val`` (the ``validation`` files).
"""
from __future__ import annotations

import csv
import os
from typing import Optional

import numpy as np
import torch

from ._base import register_dataset
from ._common import ImageFileDataset, check_split, require_dir, require_file

SPLITS = {"train": "train", "val": "validation"}
LABEL_COLUMNS = ["ImageID", "Source", "LabelName", "Confidence"]
UNLABELED = {"unknown": -1.0, "negative": 0.0}
EXPECTED = ("root/class-descriptions.csv, root/{train,validation}-annotations-human-imagelabels.csv "
            "(ImageID,Source,LabelName,Confidence) and images root/{train,validation}/<ImageID>.jpg")


def read_descriptions(path: str):
    """(label ids, display names) from a LabelName,DisplayName CSV; ValueError naming the file if malformed."""
    ids, names = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"malformed Open Images class file {path}, line {line_no}: {len(row)} fields, "
                                 "expected 2 (LabelName,DisplayName)")
            if line_no == 1 and row == ["LabelName", "DisplayName"]:
                continue
            ids.append(row[0].strip())
            names.append(row[1].strip())
    if not ids:
        raise ValueError(f"malformed Open Images class file {path}: no classes")
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"malformed Open Images class file {path}: LabelName listed twice: {', '.join(dup[:5])}")
    return ids, names


def _find_labels(root: str, name: str) -> str:
    for prefix in ("", "oidv6-", "oidv4-"):
        path = os.path.join(root, f"{prefix}{name}-annotations-human-imagelabels.csv")
        if os.path.isfile(path):
            return path
    raise ValueError(f"openimages: missing file {name}-annotations-human-imagelabels.csv in {root!r}; "
                     f"expected {EXPECTED}")


def read_image_labels(path: str, class_index: dict):
    """Sparse labels from an image-level labels CSV: (image ids, indptr, class indices, values, ignored rows)."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed Open Images label file {path}: {e}") from None
    if list(df.columns) != LABEL_COLUMNS:
        raise ValueError(f"malformed Open Images label file {path}: columns {list(df.columns)}, expected "
                         f"{','.join(LABEL_COLUMNS)}")
    conf = pd.to_numeric(df["Confidence"], errors="coerce").to_numpy()
    bad = ~np.isin(conf, (0.0, 1.0))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"malformed Open Images label file {path}, line {row + 2}: Confidence "
                         f"{df['Confidence'].iloc[row]!r}, expected 1 (positive) or 0 (negative)")
    cls = df["LabelName"].map(class_index)
    known = cls.notna().to_numpy()
    codes, image_ids = pd.factorize(df["ImageID"][known], sort=True)  # images with a row of a known class
    cls = cls[known].to_numpy(dtype=np.int64)
    vals = conf[known].astype(np.int8)
    order = np.lexsort((-vals, cls, codes))  # by image, class; positives first so they win duplicates
    codes, cls, vals = codes[order], cls[order], vals[order]
    first = np.ones(len(codes), dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | (cls[1:] != cls[:-1])
    codes, cls, vals = codes[first], cls[first], vals[first]
    indptr = np.zeros(len(image_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=len(image_ids)), out=indptr[1:])
    return list(image_ids), indptr, cls, vals, int((~known).sum())


@register_dataset("openimages")
class OpenImages(ImageFileDataset):
    """Open Images image-level labels with verified negatives; see the module docstring."""

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False, *, descriptions: str = "class-descriptions.csv",
                 unlabeled: str = "unknown"):
        name = check_split("openimages", split, SPLITS)
        if unlabeled not in UNLABELED:
            raise ValueError(f"unknown value {unlabeled!r} of unlabeled; valid: {', '.join(UNLABELED)}")
        require_dir(root, "openimages", EXPECTED)
        desc_path = os.path.join(root, descriptions)
        if descriptions == "class-descriptions.csv" and not os.path.isfile(desc_path):
            alt = os.path.join(root, "oidv6-class-descriptions.csv")
            desc_path = alt if os.path.isfile(alt) else desc_path
        ids, names = read_descriptions(require_file(desc_path, "openimages", EXPECTED))
        label_path = _find_labels(root, name)
        image_dir = require_dir(os.path.join(root, name), "openimages", EXPECTED)
        image_ids, self.indptr, self.indices, self.values, self.ignored_rows = read_image_labels(
            label_path, {label: k for k, label in enumerate(ids)})
        super().__init__([os.path.join(image_dir, f"{i}.jpg") for i in image_ids], img_size, train_augment)
        self.image_ids = image_ids
        self.label_ids = ids
        self.class_names = names
        self.multilabel = True
        self.fill = UNLABELED[unlabeled]

    def target(self, i: int) -> torch.Tensor:
        y = torch.full((len(self.class_names),), self.fill, dtype=torch.float32)
        lo, hi = self.indptr[i], self.indptr[i + 1]
        y[torch.from_numpy(self.indices[lo:hi])] = torch.from_numpy(self.values[lo:hi].astype(np.float32))
        return y

    @property
    def targets(self) -> np.ndarray:
        """Dense (S, N) float32 targets, built on demand (S x N x 4 bytes: large for the full release)."""
        out = np.full((len(self.paths), len(self.class_names)), self.fill, dtype=np.float32)
        rows = np.repeat(np.arange(len(self.paths)), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out
