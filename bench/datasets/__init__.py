"""The dataset registry: one module per dataset, each registering a builder under a name.

``create_dataset(spec, split, root=None, img_size=224, train_augment=False)`` returns a ``HeadDataset``: a torch
Dataset of ``(image, target)`` pairs, ``image`` a float tensor (3, img_size, img_size) in [0, 1] (resized to a
square, no mean/std normalisation, as the ML-Decoder recipe), ``target`` a float multi-hot vector (N,) for
multi-label data (1 positive, 0 negative, -1 unknown where the format says so, as Open Images) or a long scalar
for single-label data. ``spec`` is a spec string like the heads': ``scenes(classes=48, holdout=8)``.
"""
from __future__ import annotations

from typing import List, Optional

from ..registry import unknown_message
from ..spec import format_spec, parse_spec
from ._base import DATASETS, HeadDataset, register_dataset  # noqa: F401  (re-exported)


def list_datasets(pattern: str = "*") -> List[str]:
    return DATASETS.names(pattern)


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def create_dataset(spec: str, split: str = "train", root: Optional[str] = None, img_size: int = 224,
                   train_augment: bool = False, interpolation: str = "bilinear") -> HeadDataset:
    """Build a dataset from a spec string. Unknown names or options raise ValueError naming the valid ones;
    a missing root or wrong layout raises ValueError saying what was expected. ``interpolation`` is how images
    are resized (a pretrained backbone's own: ``bench.backbones.pretrained.data_config``)."""
    import inspect

    parsed = parse_spec(spec)
    builder = DATASETS.get(parsed.name)
    params = inspect.signature(builder).parameters
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    valid = [p for p in params if p not in ("root", "split", "img_size", "train_augment", "interpolation")]
    for key in parsed.kwargs:
        if key not in valid:
            raise ValueError(unknown_message(f"option of dataset {parsed.name!r}", key, valid))
    extra = {"interpolation": interpolation} if "interpolation" in params else {}  # a dataset that resizes
    ds = builder(root=root, split=split, img_size=img_size, train_augment=train_augment, **extra, **parsed.kwargs)
    ds.interpolation = interpolation  # at construction for a builder that resizes there, else read per image
    ds.spec = format_spec(parsed.name, parsed.kwargs)
    return ds



def dataset_num_classes(spec: str, root: Optional[str] = None) -> int:
    """N of a dataset spec. A dataset whose class count is fixed by its definition (``class_count``: Fashion-MNIST's
    10, VOC's 20, the ``classes`` option of scenes) says it without reading any file; the others build their
    evaluation split and count its classes."""
    parsed = parse_spec(spec)
    builder = DATASETS.get(parsed.name)
    count = getattr(builder, "class_count", None)
    if count is not None:
        n = count(**parsed.kwargs)
        if n is not None:
            return int(n)
    return create_dataset(spec, "val", root=root, img_size=32).num_classes


# Importing the modules registers the datasets (explicit list: no directory scanning).
from . import scenes, fashion, coco, voc, nuswide, openimages, imagefolder, emoji  # noqa: E402,F401
