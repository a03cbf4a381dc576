"""``coco2014``: MS-COCO 2014 multi-label classification, 80 classes, as the ML-Decoder paper.

On-disk layout (the official download, unpacked under one root)::

    root/annotations/instances_train2014.json   root/train2014/COCO_train2014_000000000009.jpg ...
    root/annotations/instances_val2014.json     root/val2014/COCO_val2014_000000000042.jpg ...

Splits: ``train`` (train2014) and ``val`` (val2014, the paper's evaluation split). Classes are the 80 categories
sorted by category id (so class k is the k-th id, not id k). An image is kept when it has at least one
annotation (crowd annotations included, as the paper's loader), its target marks every category annotated on it.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from ._base import register_dataset
from ._common import ImageFileDataset, check_split, require_dir, require_file

SPLITS = {"train": "train2014", "val": "val2014"}
EXPECTED = ("root/annotations/instances_{train,val}2014.json and root/{train,val}2014/*.jpg "
            "(the COCO 2014 download unpacked under one folder)")


def parse_instances(path: str):
    """(class names by category id, file names, (S, N) multi-hot) of the images with >= 1 annotation."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed COCO annotation file {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"malformed COCO annotation file {path}: expected a JSON object at the top")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"malformed COCO annotation file {path}: missing list {key!r}")
    try:
        cats = sorted(data["categories"], key=lambda c: c["id"])
        names = [str(c["name"]) for c in cats]
        cat_index = {c["id"]: k for k, c in enumerate(cats)}
        files = {im["id"]: im["file_name"] for im in data["images"]}
        labels: dict = {}
        for ann in data["annotations"]:
            image_id, cat_id = ann["image_id"], ann["category_id"]
            if cat_id not in cat_index:
                raise ValueError(f"malformed COCO annotation file {path}: annotation {ann.get('id')!r} has "
                                 f"category_id {cat_id!r}, which is not among the categories")
            if image_id not in files:
                raise ValueError(f"malformed COCO annotation file {path}: annotation {ann.get('id')!r} refers to "
                                 f"image_id {image_id!r}, which is not among the images")
            labels.setdefault(image_id, set()).add(cat_index[cat_id])
    except (KeyError, TypeError) as e:
        raise ValueError(f"malformed COCO annotation file {path}: an entry lacks the field {e}") from None
    ids = sorted(labels)
    targets = np.zeros((len(ids), len(names)), dtype=np.float32)
    for row, image_id in enumerate(ids):
        targets[row, sorted(labels[image_id])] = 1.0
    return names, [files[i] for i in ids], targets


@register_dataset("coco2014")
class COCO2014(ImageFileDataset):
    """MS-COCO 2014, 80 classes; see the module docstring for the layout."""

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False):
        name = check_split("coco2014", split, SPLITS)
        require_dir(root, "coco2014", EXPECTED)
        ann = require_file(os.path.join(root, "annotations", f"instances_{name}.json"), "coco2014", EXPECTED)
        image_dir = require_dir(os.path.join(root, name), "coco2014", EXPECTED)
        names, files, targets = parse_instances(ann)
        super().__init__([os.path.join(image_dir, f) for f in files], img_size, train_augment)
        self.class_names = names
        self.targets = targets
        self.multilabel = True
