"""Shared helpers of the file-based datasets: split names, image loading, light augmentation, skipping.

An image that fails to decode (or is missing) is skipped: ``__getitem__`` returns the next valid image with its
own target and records ``(path, reason)`` in ``.skipped`` and as a warning. DataLoader workers are separate
processes, so the record is also appended to a small per-dataset log file that every copy of the dataset shares;
``.skipped`` in the main process therefore counts the images skipped in every worker.
"""
from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ._base import HeadDataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")

# Errors PIL raises on a truncated, corrupt or missing file. Anything else is a bug and propagates.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def check_split(dataset: str, split: str, aliases: Dict[str, str]) -> str:
    """Map a split name to the dataset's own name for it (e.g. VOC ``val`` -> ``test``); ValueError if unknown."""
    if split not in aliases:
        raise ValueError(f"unknown split {split!r} for dataset {dataset!r}; valid: {', '.join(aliases)}")
    return aliases[split]


def check_positive(name: str, value, allow_none: bool = False) -> None:
    """ValueError unless ``value`` is a positive int (or None where allowed). Bools are not ints here."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def require_dir(path: str, what: str, expected: str) -> str:
    """Return ``path`` if it is a directory, else ValueError saying what layout was expected."""
    if path is None:
        raise ValueError(f"{what}: no data root given (use --data-root); expected {expected}")
    if not os.path.isdir(path):
        raise ValueError(f"{what}: {path!r} is not a directory; expected {expected}")
    return path


def require_file(path: str, what: str, expected: str) -> str:
    if not os.path.isfile(path):
        raise ValueError(f"{what}: missing file {path!r}; expected {expected}")
    return path


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


PIL_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def load_image(path: str, img_size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Decode an image file as RGB, resize to a square ``img_size`` (aspect not kept) with ``interpolation``,
    -> (3, S, S) in [0, 1].

    Raises one of DECODE_ERRORS on a corrupt or missing file.
    """
    with Image.open(path) as img:
        # JPEG: let libjpeg decode at a reduced scale (still >= img_size) before resizing: much faster on big photos.
        img.draft("RGB", (img_size, img_size))
        img = img.convert("RGB").resize((img_size, img_size), PIL_INTERPOLATION[interpolation])
    return pil_to_tensor(img)


def augment(img: torch.Tensor) -> torch.Tensor:
    """Light, cheap training augmentation: random horizontal flip and one random cutout (p=0.5 each).

    Uses torch's global RNG, which the DataLoader seeds differently in every worker.
    """
    if torch.rand(()) < 0.5:
        img = img.flip(-1)
    if torch.rand(()) < 0.5:
        _, h, w = img.shape
        side = max(1, int(min(h, w) * (0.1 + 0.2 * float(torch.rand(())))))
        y = int(torch.randint(0, h - side + 1, ()))
        x = int(torch.randint(0, w - side + 1, ()))
        img = img.clone()
        img[:, y:y + side, x:x + side] = float(torch.rand(()))  # a grey square
    return img


class ImageFileDataset(HeadDataset):
    """A dataset of image files with one target row each; subclasses set ``paths``, ``targets``, ``class_names``.

    Subclasses with sparse targets override ``target(i)``.
    """

    def __init__(self, paths: Sequence[str], img_size: int, train_augment: bool):
        check_positive("img_size", img_size)
        self._skip_log = os.path.join(tempfile.gettempdir(), f"headbench-skipped-{uuid.uuid4().hex}.tsv")
        self._owner_pid = os.getpid()
        self._bad: set = set()
        super().__init__()  # sets self.skipped = [] (the setter below)
        self.paths: List[str] = list(paths)
        self.img_size = img_size
        self.train_augment = train_augment

    # ---- skipped images, shared across DataLoader workers -------------------------------------------------
    @property
    def skipped(self) -> List[Tuple[str, str]]:
        """(path, reason) of every image skipped so far, in this process and in its DataLoader workers."""
        seen, out = set(), []
        rows = list(self._skipped_here)
        if os.path.exists(self._skip_log):
            with open(self._skip_log, encoding="utf-8") as f:
                rows += [tuple(line.rstrip("\n").split("\t", 1)) for line in f if "\t" in line]
        for path, reason in rows:
            if path not in seen:
                seen.add(path)
                out.append((path, reason))
        return out

    @skipped.setter
    def skipped(self, value) -> None:
        self._skipped_here = list(value)

    def _record_skip(self, path: str, err: BaseException) -> None:
        reason = f"{type(err).__name__}: {err}".replace("\t", " ").replace("\n", " ")
        self._skipped_here.append((path, reason))
        with open(self._skip_log, "a", encoding="utf-8") as f:  # one short line per write: appends do not interleave
            f.write(f"{path}\t{reason}\n")
        warnings.warn(f"skipped image {path}: {reason}", RuntimeWarning, stacklevel=3)

    def __del__(self):
        if getattr(self, "_owner_pid", None) == os.getpid() and os.path.exists(self._skip_log):
            try:
                os.remove(self._skip_log)
            except OSError:  # already gone; nothing to clean
                pass

    # ---- items ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    def target(self, i: int) -> torch.Tensor:
        t = self.targets[i]
        return torch.from_numpy(np.array(t, dtype=np.float32)) if self.multilabel else torch.tensor(int(t))

    def __getitem__(self, index: int):
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        index %= n
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                img = load_image(self.paths[i], self.img_size, self.interpolation)
            except DECODE_ERRORS as err:
                self._bad.add(i)
                self._record_skip(self.paths[i], err)
                continue
            if self.train_augment:
                img = augment(img)
            return img, self.target(i)
        raise RuntimeError(f"no image of this dataset could be decoded ({n} tried); see .skipped")


def read_lines(path: str) -> List[str]:
    """Non-empty stripped lines of a text file."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def list_images(folder: str) -> List[str]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(e.path for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
