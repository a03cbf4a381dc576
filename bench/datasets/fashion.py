"""``fashion-mnist`` (single-label) and ``fashion-mosaic`` (multi-label mosaics) from the real Fashion-MNIST files.

On-disk layout: the four standard IDX files in one folder, gzipped or not (Debian's ``dataset-fashion-mnist``
installs them in /usr/share/datasets/fashion-mnist, the default root)::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]  (60,000 images, the ``train`` split)
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]   (10,000 images, the ``val`` split)

Images are 28x28 grey, repeated to 3 channels and resized (bilinear, or the dataset's ``interpolation``) to
``img_size``.

``fashion-mnist`` options: ``train_size``, ``val_size``: use only the first n images of the split (None: all).

``fashion-mosaic`` options: ``grid`` (cells per side, default 2), ``empty`` (probability that a cell is empty,
default 0.25; at least one cell is always filled), ``train_size``, ``val_size`` (mosaics per split), ``seed``.
Mosaic ``i`` of split ``s`` is a pure function of ``(seed, s, i)``; train mosaics use train images only and val
mosaics t10k images only. The target is the set of classes present (a class can appear in several cells).
"""
from __future__ import annotations

import functools
import gzip
import os
import zlib
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ._base import HeadDataset, register_dataset
from ._common import augment, check_positive, check_split

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SPLITS = {"train": "train", "val": "t10k"}
_SPLIT_CODE = {"train": 0, "t10k": 1}
_INSTALL_HINT = ("on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (installs them in "
                 f"{DEFAULT_ROOT}), or pass --data-root pointing at a folder holding them")


def _find(root: str, name: str) -> str:
    for candidate in (name + ".gz", name):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    raise ValueError(f"Fashion-MNIST file {name}[.gz] not found in {root!r}: expected the four IDX files "
                     f"train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                     f"t10k-labels-idx1-ubyte (gzipped or not); {_INSTALL_HINT}")


def read_idx(path: str, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or not). ValueError naming the file if it is malformed."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"malformed IDX file {path}: cannot read it ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"malformed IDX file {path}: bad magic number (expected 0x0000 then type and rank)")
    if data[2] != 0x08:
        raise ValueError(f"malformed IDX file {path}: data type 0x{data[2]:02x}, expected 0x08 (unsigned byte)")
    if data[3] != ndim:
        raise ValueError(f"malformed IDX file {path}: rank {data[3]}, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"malformed IDX file {path}: truncated header")
    dims = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(f"malformed IDX file {path}: {len(data) - header} data bytes, expected {expected} "
                         f"for shape {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable, owns its memory


@functools.lru_cache(maxsize=4)
def load_split(root: str, prefix: str) -> Tuple[np.ndarray, np.ndarray]:
    """(images (S, 28, 28) uint8, labels (S,) int64) of ``train`` or ``t10k``; cached per process."""
    img_path = _find(root, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path, 3)
    labels = read_idx(lbl_path, 1).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"malformed Fashion-MNIST split {prefix!r}: {len(images)} images in {img_path} but "
                         f"{len(labels)} labels in {lbl_path}")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"malformed IDX file {lbl_path}: label {labels.max()} is not in 0..{len(CLASS_NAMES) - 1}")
    return images, labels


def _resolve_root(root: Optional[str]) -> str:
    root = DEFAULT_ROOT if root is None else root
    if not os.path.isdir(root):
        raise ValueError(f"Fashion-MNIST root {root!r} is not a directory: expected a folder with the four IDX "
                         f"files; {_INSTALL_HINT}")
    return root


def _to_image(pixels: np.ndarray, img_size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """(H, W) uint8 grey -> (3, img_size, img_size) float in [0, 1], resized with ``interpolation``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0)[None, None]  # (1, 1, H, W)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode=interpolation, align_corners=False,
                          antialias=img_size < pixels.shape[-1]).clamp_(0.0, 1.0)  # bicubic overshoots
    return x[0].expand(3, img_size, img_size).contiguous()  # (3, S, S)


def _subset_size(name: str, value: Optional[int], available: int) -> int:
    check_positive(name, value, allow_none=True)
    if value is not None and value > available:
        raise ValueError(f"{name}={value} is more than the {available} images of the split")
    return available if value is None else value


@register_dataset("fashion-mnist")
class FashionMNIST(HeadDataset):
    """Fashion-MNIST, single-label, 10 classes; see the module docstring."""

    @staticmethod
    def class_count(**options) -> int:
        return len(CLASS_NAMES)

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False, *, train_size: Optional[int] = None, val_size: Optional[int] = None):
        super().__init__()
        prefix = check_split("fashion-mnist", split, SPLITS)
        check_positive("img_size", img_size)
        images, labels = load_split(_resolve_root(root), prefix)
        n = _subset_size("train_size" if prefix == "train" else "val_size",
                         train_size if prefix == "train" else val_size, len(labels))
        self.images, self.targets = images[:n], labels[:n]
        self.class_names = list(CLASS_NAMES)
        self.multilabel = False
        self.img_size, self.train_augment = img_size, train_augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        x = _to_image(self.images[index], self.img_size, self.interpolation)
        if self.train_augment:
            x = augment(x)
        return x, torch.tensor(int(self.targets[index]))


@register_dataset("fashion-mosaic")
class FashionMosaic(HeadDataset):
    """Multi-label mosaics of Fashion-MNIST images; see the module docstring."""

    @staticmethod
    def class_count(**options) -> int:
        return len(CLASS_NAMES)

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False, *, grid: int = 2, empty: float = 0.25, train_size: int = 10000,
                 val_size: int = 2000, seed: int = 0):
        super().__init__()
        self.prefix = check_split("fashion-mosaic", split, SPLITS)
        check_positive("img_size", img_size)
        check_positive("grid", grid)
        check_positive("train_size", train_size)
        check_positive("val_size", val_size)
        if isinstance(empty, bool) or not isinstance(empty, (int, float)) or not 0.0 <= empty < 1.0:
            raise ValueError(f"empty must be a probability in [0, 1), got {empty!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.images, self.labels = load_split(_resolve_root(root), self.prefix)
        self.grid, self.empty, self.seed = grid, float(empty), seed
        self.size = train_size if self.prefix == "train" else val_size
        self.class_names = list(CLASS_NAMES)
        self.multilabel = True
        self.img_size, self.train_augment = img_size, train_augment
        self._targets: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return self.size

    def cells(self, i: int) -> np.ndarray:
        """Source image index of each cell of mosaic ``i`` (row-major), -1 for an empty cell."""
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.prefix], i])
        k = self.grid * self.grid
        idx = rng.integers(0, len(self.labels), size=k)
        filled = rng.random(k) >= self.empty
        if not filled.any():
            filled[rng.integers(k)] = True
        return np.where(filled, idx, -1)

    @property
    def targets(self) -> np.ndarray:
        """(S, 10) float32 multi-hot, computed from the cell draws on first use."""
        if self._targets is None:
            t = np.zeros((self.size, len(CLASS_NAMES)), dtype=np.float32)
            for i in range(self.size):
                c = self.cells(i)
                t[i, self.labels[c[c >= 0]]] = 1.0
            self._targets = t
        return self._targets

    def __getitem__(self, index: int):
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} mosaics")
        cells = self.cells(index % self.size)
        g, side = self.grid, self.images.shape[-1]
        canvas = np.zeros((g * side, g * side), dtype=np.uint8)
        y = np.zeros(len(CLASS_NAMES), dtype=np.float32)
        for k, src in enumerate(cells):
            if src >= 0:
                r, c = divmod(k, g)
                canvas[r * side:(r + 1) * side, c * side:(c + 1) * side] = self.images[src]
                y[self.labels[src]] = 1.0
        x = _to_image(canvas, self.img_size, self.interpolation)
        if self.train_augment:
            x = augment(x)
        return x, torch.from_numpy(y)
