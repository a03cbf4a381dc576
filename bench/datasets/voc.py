"""``voc2007``: PASCAL VOC 2007 multi-label classification, 20 classes.

On-disk layout (the VOCdevkit download; ``root`` may be the folder holding VOCdevkit, VOCdevkit itself, or
VOC2007 itself)::

    VOCdevkit/VOC2007/ImageSets/Main/trainval.txt, test.txt    one image id per line
    VOCdevkit/VOC2007/Annotations/<id>.xml                      <object><name>dog</name><difficult>0</difficult>
    VOCdevkit/VOC2007/JPEGImages/<id>.jpg

Splits: ``train`` = trainval (5,011 images), ``val`` = test (4,952 images), the standard protocol; ``trainval``
and ``test`` are accepted too.

Policy for ``difficult`` objects (as the VOC evaluation, which ignores them): a class present only through
difficult objects gets target -1 (unknown: neither positive nor negative; metrics and losses must skip it); a
class with at least one non-difficult object is 1; an absent class is 0.

Class names are words, in the standard order; the XML names ``diningtable``, ``pottedplant`` and ``tvmonitor``
are given as "dining table", "potted plant" and "tv monitor" (they feed word queries).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import List, Optional

import numpy as np

from ._base import register_dataset
from ._common import ImageFileDataset, check_split, read_lines, require_file

XML_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor")
WORDS = {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}
CLASS_NAMES = [WORDS.get(n, n) for n in XML_NAMES]
SPLITS = {"train": "trainval", "val": "test", "trainval": "trainval", "test": "test"}
EXPECTED = ("VOCdevkit/VOC2007 with Annotations/*.xml, ImageSets/Main/{trainval,test}.txt and JPEGImages/*.jpg "
            "(root may be the folder holding VOCdevkit, VOCdevkit, or VOC2007)")


def find_voc_root(root: Optional[str]) -> str:
    """The VOC2007 folder under ``root``; ValueError saying what was expected."""
    if root is None:
        raise ValueError(f"voc2007: no data root given (use --data-root); expected {EXPECTED}")
    for candidate in (os.path.join(root, "VOCdevkit", "VOC2007"), os.path.join(root, "VOC2007"), root):
        if os.path.isdir(os.path.join(candidate, "Annotations")) and \
                os.path.isdir(os.path.join(candidate, "ImageSets", "Main")):
            return candidate
    raise ValueError(f"voc2007: no VOC2007 layout found under {root!r}; expected {EXPECTED}")


def parse_annotation(path: str) -> np.ndarray:
    """(20,) float32 target of one VOC XML file: 1 present, -1 difficult only, 0 absent."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise ValueError(f"malformed VOC annotation file {path}: {e}") from None
    except OSError as e:
        raise ValueError(f"missing VOC annotation file {path} ({e.strerror}); expected {EXPECTED}") from None
    target = np.zeros(len(XML_NAMES), dtype=np.float32)
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in XML_NAMES:
            raise ValueError(f"malformed VOC annotation file {path}: unknown class name {name!r}; "
                             f"valid: {', '.join(XML_NAMES)}")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise ValueError(f"malformed VOC annotation file {path}: <difficult> is {flag!r}, expected 0 or 1")
        k = XML_NAMES.index(name)
        if flag == "0":
            target[k] = 1.0
        elif target[k] == 0.0:
            target[k] = -1.0
    return target


@register_dataset("voc2007")
class VOC2007(ImageFileDataset):
    """PASCAL VOC 2007, 20 classes, difficult objects as unknown (-1); see the module docstring."""

    @staticmethod
    def class_count(**options) -> int:
        return len(CLASS_NAMES)

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False):
        name = check_split("voc2007", split, SPLITS)
        voc = find_voc_root(root)
        ids: List[str] = read_lines(require_file(os.path.join(voc, "ImageSets", "Main", f"{name}.txt"),
                                                 "voc2007", EXPECTED))
        targets = np.stack([parse_annotation(os.path.join(voc, "Annotations", f"{i}.xml")) for i in ids]) \
            if ids else np.zeros((0, len(XML_NAMES)), np.float32)
        super().__init__([os.path.join(voc, "JPEGImages", f"{i}.jpg") for i in ids], img_size, train_augment)
        self.class_names = list(CLASS_NAMES)
        self.targets = targets
        self.multilabel = True
