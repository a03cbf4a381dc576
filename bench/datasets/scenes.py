"""``scenes``: procedurally generated multi-label images, the embedded default (no files, any resolution).

Each image holds 1 to 4 objects; a class is a colour-shape pair named in words ("red circle", "blue square"),
so that class names can feed word queries and unseen pairs can be held out for zero-shot tests. Objects have
random positions, sizes, rotations, colour jitter and shading, may overlap (each keeps a visible part), and sit
on a random background: a desaturated gradient with noise, sometimes low-contrast stripes or checks, and 0-2
grey distractor shapes that are no class. Similar colours (red/orange/pink, blue/cyan/purple) keep it from being
trivial for a small CNN.

Image ``i`` of split ``s`` is a pure function of ``(seed, s, i)``: its RNG is seeded from that triple, so any
worker can draw any image in any order; nothing is precomputed but the labels (on first use of ``.targets``).
A rendered image is kept in a per-process cache shared by every ``Scenes`` object with the same generation
options, so epochs, heads and seeds of one run draw each image once; the cache holds at most
``HEADBENCH_SCENES_CACHE_MB`` MiB (default 1024; 0 turns it off) and returns copies, so it never changes a result.

Options:
    classes: number of classes (1..80). Colours are taken in the order of COLOURS (most distinct first) over the
        first 6 shapes, so ``classes=48`` is 8 colours x 6 shapes; from 61 to 80 the last 2 shapes are added.
    train_size, val_size: number of images in each split.
    seed: the dataset seed (images and labels; not the held-out classes).
    holdout: classes held out for zero-shot evaluation: a number (chosen by a fixed rule, so the same for every
        seed, such that each held-out pair's colour and shape stay seen in other classes) or a list of class
        names. Held-out classes never appear in the train split; they appear in val. Listed in ``.unseen``.
    max_objects: the largest number of objects per image (1..4 by default).
    distractors: add grey distractor shapes and textured backgrounds (False: plain gradients only).
    embeddings: class embeddings for word queries: "words" (the class names embedded by a sentence model, done
        by the runner through bench.datasets.words) or "random" (fixed random unit vectors, 384-d: the zero-shot
        control).

Splits: ``train`` and ``val``.
"""
from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..registry import unknown_message
from ._base import HeadDataset, register_dataset
from ._common import augment, check_positive, check_split

# name -> RGB in [0, 1]; ordered most distinct first, so that a small ``classes`` still spreads over hues.
COLOURS: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
    ("red", (0.86, 0.10, 0.10)),
    ("blue", (0.12, 0.25, 0.90)),
    ("green", (0.12, 0.68, 0.18)),
    ("yellow", (0.95, 0.88, 0.12)),
    ("purple", (0.55, 0.15, 0.75)),
    ("orange", (0.98, 0.52, 0.06)),
    ("cyan", (0.10, 0.80, 0.86)),
    ("pink", (0.98, 0.50, 0.72)),
    ("brown", (0.50, 0.30, 0.12)),
    ("white", (0.97, 0.97, 0.97)),
)
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "hexagon")
BASE_SHAPES = 6  # shapes used for up to len(COLOURS) * BASE_SHAPES classes
MAX_CLASSES = len(COLOURS) * len(SHAPES)
SPLITS = {"train": "train", "val": "val"}
_SPLIT_CODE = {"train": 0, "val": 1}
_HOLDOUT_SEED = 1234  # fixed: the held-out classes do not change with the dataset seed
# Word queries: "words" embeds the class names with bench.datasets.words (the runner does it); "random" gives every
# class a fixed random unit vector of the same width, the control that tells whether the names' meaning is used.
EMBEDDINGS = ("words", "random")
RANDOM_EMBEDDING_DIM = 384
CACHE_ENV = "HEADBENCH_SCENES_CACHE_MB"
DEFAULT_CACHE_MB = 1024


class RenderCache:
    """Rendered (image, labels) per generation key and index, in this process, up to ``limit_bytes`` in all
    (images beyond the limit are rendered every time; nothing is evicted, so the hit rate stays predictable)."""

    def __init__(self):
        self.items: dict = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def limit_bytes() -> int:
        text = os.environ.get(CACHE_ENV, str(DEFAULT_CACHE_MB))
        try:
            mb = float(text)
        except ValueError:
            raise ValueError(f"{CACHE_ENV} must be a number of MiB (0 = no cache), got {text!r}") from None
        return int(mb * 2**20)

    def get(self, key: tuple):
        hit = self.items.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        return hit[0].copy(), hit[1].copy()  # copies: a caller may write into what it gets

    def put(self, key: tuple, img: np.ndarray, labels: np.ndarray) -> None:
        size = img.nbytes + labels.nbytes
        if self.bytes + size <= self.limit_bytes():
            self.items[key] = (img.copy(), labels.copy())
            self.bytes += size

    def clear(self) -> None:
        self.items.clear()
        self.bytes = self.hits = self.misses = 0


RENDER_CACHE = RenderCache()


def class_vocabulary(classes: int) -> List[Tuple[int, int]]:
    """(colour index, shape index) of each class, in class order."""
    pairs = [(c, s) for c in range(len(COLOURS)) for s in range(BASE_SHAPES)]
    pairs += [(c, s) for s in range(BASE_SHAPES, len(SHAPES)) for c in range(len(COLOURS))]
    return pairs[:classes]


def choose_holdout(pairs: Sequence[Tuple[int, int]], count: int) -> List[int]:
    """``count`` class indices to hold out such that every colour and shape in use stays in some seen class."""
    rng = np.random.default_rng(_HOLDOUT_SEED)
    seen_colour = {}
    seen_shape = {}
    for c, s in pairs:
        seen_colour[c] = seen_colour.get(c, 0) + 1
        seen_shape[s] = seen_shape.get(s, 0) + 1
    chosen = []
    for k in rng.permutation(len(pairs)):
        if len(chosen) == count:
            break
        c, s = pairs[k]
        if seen_colour[c] > 1 and seen_shape[s] > 1:
            seen_colour[c] -= 1
            seen_shape[s] -= 1
            chosen.append(int(k))
    if len(chosen) < count:
        raise ValueError(f"holdout={count} is too many for {len(pairs)} classes: at most {len(chosen)} can be held "
                         "out while every colour and shape stays seen")
    return sorted(chosen)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit-radius shape in local coordinates (u, v) (already rotated and scaled)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # equilateral, circumradius 1
        return (v >= -0.5) & (v <= 1.0 - 1.732 * np.abs(u))
    if shape == "cross":
        a, b = np.abs(u), np.abs(v)
        return ((a <= 0.3) & (b <= 0.95)) | ((b <= 0.3) & (a <= 0.95))
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    if shape == "diamond":  # a rhombus, narrower than tall: not a rotated square
        return np.abs(u) / 0.6 + np.abs(v) <= 1.0
    if shape == "star":  # five points: radius alternates linearly between 1 and 0.4 with the angle
        t = np.mod(np.arctan2(v, u) * (5.0 / (2.0 * np.pi)), 1.0)
        return np.sqrt(u * u + v * v) <= 0.4 + 0.6 * np.abs(1.0 - 2.0 * t)
    if shape == "hexagon":
        a = np.abs(u)
        return (np.abs(v) <= 0.866) & (0.866 * a + 0.5 * np.abs(v) <= 0.866)
    raise AssertionError(shape)


def _background(rng: np.random.Generator, size: int, textured: bool) -> np.ndarray:
    """(3, size, size) float32: a desaturated two-colour gradient, sometimes low-contrast stripes or checks."""
    p = rng.random(13)  # every random number of the background in one draw (numpy call overhead dominates)
    ramp = np.arange(size, dtype=np.float32) * np.float32(1.0 / max(size - 1, 1))  # (S,) in [0, 1]
    a = 2 * math.pi * p[0]
    ca, sa = math.cos(a), math.sin(a)
    lo, hi = min(ca, 0.0) + min(sa, 0.0), max(ca, 0.0) + max(sa, 0.0)  # range of ca*x + sa*y on [0, 1]^2
    scale = 1.0 / max(hi - lo, 1e-6)
    g = np.float32(ca * scale) * ramp[None, :] + np.float32(sa * scale) * ramp[:, None]  # (S, S), min at lo
    grey = 0.15 + 0.7 * p[1:3]
    tint = 0.24 * p[3:9].reshape(2, 3) - 0.12  # low saturation: backgrounds are no class colour
    c0, c1 = (grey[:, None] + tint).astype(np.float32)[:, :, None, None]  # (3, 1, 1) each
    c0 = c0 - (c1 - c0) * np.float32(lo * scale)
    img = c0 + (c1 - c0) * g[None]  # (3, S, S)
    kind = int(3 * p[9]) if textured else 0  # 0 plain, 1 stripes, 2 checks
    if kind > 0:
        period = (4 + 8 * p[10]) * size / 64
        b = math.pi * p[11]
        cb, sb = math.cos(b) / period, math.sin(b) / period
        offset = np.float32(4 * size)  # keeps the phase positive, so truncation is floor
        pattern = (np.float32(cb) * ramp[None, :] * (size - 1) + np.float32(sb) * ramp[:, None] * (size - 1)
                   + offset).astype(np.int32)  # (S, S) stripe index
        if kind == 2:
            pattern ^= (np.float32(cb) * ramp[:, None] * (size - 1) - np.float32(sb) * ramp[None, :] * (size - 1)
                        + offset).astype(np.int32)
        amp = 0.03 + 0.07 * p[12]
        img += ((pattern & 1).astype(np.float32) * np.float32(2 * amp) - np.float32(amp))[None]
    return img


@register_dataset("scenes")
class Scenes(HeadDataset):
    """Colour-shape scenes; see the module docstring for the options."""

    @staticmethod
    def class_count(classes: int = 48, **options) -> int:
        return classes

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False, *, classes: int = 48, train_size: int = 2000, val_size: int = 500,
                 seed: int = 0, holdout: Union[int, Sequence[str]] = 0, max_objects: int = 4,
                 distractors: bool = True, embeddings: str = "words"):
        super().__init__()
        self.split = check_split("scenes", split, SPLITS)
        check_positive("img_size", img_size)
        check_positive("train_size", train_size)
        check_positive("val_size", val_size)
        check_positive("max_objects", max_objects)
        if isinstance(classes, bool) or not isinstance(classes, int) or not 1 <= classes <= MAX_CLASSES:
            raise ValueError(f"classes must be an integer in 1..{MAX_CLASSES} "
                             f"({len(COLOURS)} colours x {len(SHAPES)} shapes), got {classes!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not isinstance(distractors, bool):
            raise ValueError(f"distractors must be True or False, got {distractors!r}")
        self.pairs = class_vocabulary(classes)
        self.class_names = [f"{COLOURS[c][0]} {SHAPES[s]}" for c, s in self.pairs]
        self.multilabel = True
        self.unseen = tuple(self._resolve_holdout(holdout))
        self.seen = tuple(k for k in range(classes) if k not in self.unseen)  # the classes train draws from
        self.max_objects = min(max_objects, classes)
        self.size = train_size if self.split == "train" else val_size
        self.seed = seed
        self.img_size = img_size
        self.train_augment = train_augment
        self.distractors = distractors
        self._targets: Optional[np.ndarray] = None
        if embeddings not in EMBEDDINGS:
            raise ValueError(f"unknown embeddings {embeddings!r}; valid: {', '.join(EMBEDDINGS)}")
        if embeddings == "random":  # the zero-shot control: class vectors that carry no meaning
            rng = np.random.default_rng(_HOLDOUT_SEED)
            E = rng.standard_normal((classes, RANDOM_EMBEDDING_DIM)).astype(np.float32)
            self.class_embeddings = E / np.linalg.norm(E, axis=1, keepdims=True)

    def _resolve_holdout(self, holdout) -> List[int]:
        if isinstance(holdout, bool):
            raise ValueError(f"holdout must be a number of classes or a list of class names, got {holdout!r}")
        if isinstance(holdout, int):
            if not 0 <= holdout < len(self.pairs):
                raise ValueError(f"holdout must be in 0..{len(self.pairs) - 1}, got {holdout}")
            return choose_holdout(self.pairs, holdout) if holdout else []
        if isinstance(holdout, str):
            holdout = [holdout]
        if isinstance(holdout, (list, tuple)):
            out = []
            for name in holdout:
                if name not in self.class_names:
                    raise ValueError(unknown_message("held-out class", name, self.class_names))
                out.append(self.class_names.index(name))
            if len(set(out)) == len(self.pairs):
                raise ValueError("holdout cannot hold out every class")
            return sorted(set(out))
        raise ValueError(f"holdout must be a number of classes or a list of class names, got {holdout!r}")

    def __len__(self) -> int:
        return self.size

    # ---- generation -------------------------------------------------------------------------------------------
    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLIT_CODE[self.split], i])

    def _labels(self, rng: np.random.Generator) -> np.ndarray:
        """The classes of one image, drawn first from its RNG (train never draws held-out classes)."""
        allowed = self.seen if self.split == "train" else range(len(self.pairs))
        n = int(rng.integers(1, self.max_objects + 1))
        return rng.choice(np.asarray(allowed), size=min(n, len(allowed)), replace=False)

    @property
    def targets(self) -> np.ndarray:
        """(S, N) float32 multi-hot, computed from the label draws alone (no drawing) on first use."""
        if self._targets is None:
            t = np.zeros((self.size, len(self.pairs)), dtype=np.float32)
            for i in range(self.size):
                t[i, self._labels(self._rng(i))] = 1.0
            self._targets = t
        return self._targets

    def _cache_key(self, i: int) -> tuple:
        """Everything an image depends on: the generation options and its index (not augmentation)."""
        return (self.seed, self.split, self.img_size, len(self.pairs), self.unseen, self.max_objects,
                self.distractors, i)

    def render(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Image ``i`` as (3, S, S) float32 in [0, 1] and its sorted class indices (from the process cache
        when it was drawn before)."""
        key = self._cache_key(i)
        hit = RENDER_CACHE.get(key)
        if hit is not None:
            return hit
        img, labels = self._draw(i)
        RENDER_CACHE.put(key, img, labels)
        return img, labels

    def _draw(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Draw image ``i`` from its own RNG: (3, S, S) float32 in [0, 1] and its sorted class indices."""
        rng = self._rng(i)
        labels = self._labels(rng)
        size = self.img_size
        img = _background(rng, size, self.distractors)
        n_distract = int(rng.integers(0, 3)) if self.distractors else 0
        n = n_distract + len(labels)
        p = rng.random((n, 8))  # per object: shape, grey, radius, angle, 3 colour jitters, spare
        pos = rng.random((n, 8, 2))  # up to 8 tries to place each object
        pix = np.arange(size, dtype=np.float32) + np.float32(0.5)  # pixel centres
        placed: List[Tuple[float, float, float]] = []
        for k in range(n):  # distractors first, so that class objects are drawn on top of them
            if k < n_distract:
                shape = SHAPES[int(p[k, 0] * len(SHAPES))]
                rgb = np.full(3, 0.2 + 0.5 * p[k, 1], np.float32)
                r = (0.06 + 0.04 * p[k, 2]) * size
            else:
                c, s = self.pairs[labels[k - n_distract]]
                shape = SHAPES[s]
                rgb = np.clip(np.asarray(COLOURS[c][1]) + 0.16 * p[k, 4:7] - 0.08, 0.0, 1.0).astype(np.float32)
                r = (0.11 + 0.11 * p[k, 2]) * size
            for t in range(8):  # keep objects from hiding each other: centres at least ~0.6 radii apart
                cy, cx = r * 0.7 + (size - 1.4 * r) * pos[k, t]
                if all((cy - py) ** 2 + (cx - px) ** 2 >= (0.6 * (r + pr)) ** 2 for py, px, pr in placed):
                    break
            placed.append((cy, cx, r))
            # squares only tilt a little, so that a square never looks like a diamond
            angle = (2 * p[k, 3] - 1) * (0.35 if shape == "square" else math.pi)
            y0, y1 = max(0, int(cy - r) - 1), min(size, int(cy + r) + 2)
            x0, x1 = max(0, int(cx - r) - 1), min(size, int(cx + r) + 2)
            inv = np.float32(1.0 / r)
            ys = ((pix[y0:y1] - np.float32(cy)) * inv)[:, None]  # (h, 1), unit radius
            xs = ((pix[x0:x1] - np.float32(cx)) * inv)[None, :]  # (1, w)
            ca, sa = np.float32(math.cos(angle)), np.float32(math.sin(angle))
            u = ca * xs + sa * ys  # (h, w)
            v = sa * xs - ca * ys  # minus: image rows grow downwards, so triangles point up at angle 0
            mask = _shape_mask(shape, u, v)
            patch = img[:, y0:y1, x0:x1]  # (3, h, w), a view: writing it draws into img
            np.copyto(patch, rgb[:, None, None], where=mask[None])
        noise = np.float32(0.2 * rng.random())  # uniform pixel noise (std up to ~0.06); cheaper than normal
        img += (rng.random(img.shape, dtype=np.float32) - np.float32(0.5)) * noise
        return np.clip(img, 0.0, 1.0, out=img), np.sort(labels)

    def __getitem__(self, index: int):
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} images")
        img, labels = self.render(index % self.size)
        x = torch.from_numpy(img)  # (3, S, S)
        if self.train_augment:
            x = augment(x)
        y = torch.zeros(len(self.pairs), dtype=torch.float32)
        y[torch.from_numpy(labels)] = 1.0
        return x, y
