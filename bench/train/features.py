"""Backbone features for the ``probe`` protocol: computed once, cached on disk, shared by every head.

The backbone runs in eval mode under ``no_grad``; the features (S, C, H, W) or (S, L, C) and the targets are saved
in one file named by a key that hashes the backbone's name and weights, the dataset, its split and resolution, and
the storage dtype, so ten heads on one backbone cost one backbone pass, in this process or the next. Files are
written to a temporary name and renamed, so concurrent processes never read a half-written cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm  # not tqdm.auto: its asyncio class calls iter() on the DataLoader in __init__

from ..measure.alloc import keep_freed_memory
from ..run.interrupt import deferred

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def weights_hash(module: nn.Module) -> str:
    """SHA-1 of a module's state dict: every key, dtype, shape and byte of every tensor, in order."""
    h = hashlib.sha1()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def feature_cache_key(backbone: nn.Module, *, backbone_name: str, dataset_spec: str, split: str, img_size: int,
                      dtype: torch.dtype = torch.float32, data_fingerprint: str = "") -> str:
    """The cache key of a (backbone, weights, dataset, split, resolution, dtype): a readable prefix and a hash."""
    fields = dict(backbone=backbone_name, weights=weights_hash(backbone), dataset=dataset_spec, split=split,
                  img_size=int(img_size), dtype=str(dtype))
    if data_fingerprint:  # what the data depend on beyond their spec (HeadDataset.fingerprint)
        fields["data"] = data_fingerprint
    if getattr(backbone, "data_config", None) is not None:  # a pretrained backbone standardises its input
        fields["preprocess"] = backbone.data_config.label
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{backbone_name}-{split}-{img_size}")
    return f"{safe}-{digest}"


def _default_key(backbone: nn.Module, ds: Dataset, dtype: torch.dtype) -> str:
    """A key when the caller gives none: the dataset's spec, split (when it has one), length, image shape and a
    hash of its targets stand in for (dataset spec, split, img_size)."""
    image, _ = ds[0]
    targets = getattr(ds, "targets", None)
    th = hashlib.sha1(np.ascontiguousarray(targets).tobytes()).hexdigest()[:12] if targets is not None else "none"
    split = f"{getattr(ds, 'split', 'nosplit')}-n{len(ds)}-t{th}"
    return feature_cache_key(backbone, backbone_name=getattr(backbone, "default_cfg", {}).get("architecture")
                             or type(backbone).__name__, dataset_spec=getattr(ds, "spec", "") or type(ds).__name__,
                             split=split, img_size=int(image.shape[-1]), dtype=dtype)


def _atomic_save(obj, path: str) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path`` (atomic on POSIX). A stop
    signal that arrives meanwhile waits until the file is complete (``bench.run.interrupt.deferred``): raised inside
    torch.save it would come out as a RuntimeError of its writer, and the run would record a failed cell."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with deferred():
            with os.fdopen(fd, "wb") as f:
                torch.save(obj, f)
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def extract_features(backbone: nn.Module, ds: Dataset, *, batch_size: int, device: str, workers: int = 0,
                     cache_dir: Optional[str] = None, cache_key: Optional[str] = None,
                     dtype: torch.dtype = torch.float32, amp: str = "off",
                     progress: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run ``backbone`` (eval mode, no_grad) once over ``ds``; return (features (S, ...), targets (S, ...)).

    With ``cache_dir`` the result is stored in ``cache_dir/<cache_key>.pt`` and read back by later calls (loaded
    memory-mapped). Without ``cache_key`` one is derived from the backbone's weights and the dataset (see
    ``_default_key``); pass ``feature_cache_key(...)`` to key on the dataset spec, split and img_size explicitly.
    ``dtype`` is the storage dtype; ``amp`` ("off", "bf16", "fp16") autocasts the backbone on CUDA only.
    """
    if amp != "off" and amp not in AMP_DTYPES:
        raise ValueError(f"unknown amp {amp!r}; valid: off, {', '.join(AMP_DTYPES)}")
    path = None
    if cache_dir is not None:
        key = cache_key or _default_key(backbone, ds, dtype)
        path = os.path.join(cache_dir, f"{key}.pt")
        if os.path.isfile(path):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                return obj["features"], obj["targets"]
            except Exception as e:
                raise ValueError(f"feature cache {path!r} cannot be read ({e}); delete it to recompute") from None
    dev = torch.device(device)
    was_training = backbone.training
    # channels-last on a CPU, where oneDNN's convolutions run 1.2-2x faster in it (EfficientNet-Lite0 at 160 px,
    # batch 32: 52 -> 101 img/s); the same features up to floating-point rounding
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    if dev.type == "cpu":
        keep_freed_memory()  # each batch's activations stay mapped for the next, as in training (bench.measure.alloc)
    backbone.to(dev, memory_format=fmt).eval()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=dev.type == "cuda")
    use_amp = dev.type == "cuda" and amp != "off"
    feats, targets = [], []
    try:
        with torch.no_grad():
            for images, t in tqdm(loader, desc="features", disable=not progress, leave=False):
                with torch.autocast(dev.type, dtype=AMP_DTYPES.get(amp, torch.bfloat16), enabled=use_amp):
                    f = backbone(images.to(dev, non_blocking=True).contiguous(memory_format=fmt))  # (B, C, H, W)
                    # or (B, L, C) tokens
                feats.append(f.to("cpu", dtype).contiguous())  # heads get the usual layout
                targets.append(t)
    finally:
        backbone.train(was_training)
    features, targets = torch.cat(feats), torch.cat(targets)
    if path is not None:
        _atomic_save({"features": features, "targets": targets, "key": os.path.basename(path)[:-3]}, path)
    return features, targets
