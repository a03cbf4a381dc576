"""``emoji``: multi-label scenes of real colour emoji glyphs, ~1,350 named classes (Debian's Noto Color Emoji font).

Source: the font file of Debian's ``fonts-noto-color-emoji`` (``/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf``,
the default; ``--data-root`` may name another copy of the file or a folder holding it). It is a CBDT bitmap font:
Pillow draws its glyphs in colour at pixel size 109 only (``ImageDraw.text(..., embedded_color=True)``).

Classes: every single code point the font maps (its ``cmap`` table, read here without any font library) whose
Unicode category is "So" or "Sm" (pictographs, symbols, arrows, geometric shapes), that Python's ``unicodedata``
names, less what depicts nothing by itself: regional indicators (flag letters), the hair components, and the
text marks (c) (r) TM. Digits, ``#``, ``*``, the keycap mark, skin-tone modifiers, tag characters, variation
selectors and ZWJ are other categories and so are out too. A class is named by its Unicode name, lowercased
("grinning face"). With Debian 12's font (2.042) and Python 3.11 (Unicode 14.0) that is 1,349 classes; the 21
code points of Unicode 15.0 the font also has get names, and so classes, from Python 3.12 on.
Class order: a fixed pseudo-random order of the code points (a keyed BLAKE2 hash of each; it depends on neither
the dataset seed nor the font), so that ``classes=N`` takes the first N of the full list and spreads over every
category (``classes=50`` is not 50 faces), and a font with more code points inserts classes without reordering
the others.

Images: 1 to 4 glyphs (``min_objects``..``max_objects``) of distinct classes over a background that holds no class
content (a flat colour, a linear or radial gradient, stripes or checks, smooth colour noise), each glyph at a
random size (``min_scale``..``max_scale`` of the image side, log-uniform), position and tilt (up to
``max_rotation`` degrees either way: more would bring an arrow near its neighbour 45 degrees away, or a face near
upside down), then uniform pixel noise (none to +-6 grey levels). A later glyph may cover part of an earlier one,
but later glyphs never cover more than ``max_occlusion`` of an earlier glyph's box in all: enforced when placing,
where up to 16 positions are tried, each failure shrinking the glyph by 10% (not below ``min_scale``), and an
object that finds no place is left out, so that labels are exactly the objects drawn (at the defaults 0.04% of
objects are left out; the first object of an image always has a place). The layout (classes, boxes, tilts) is
drawn first from the image's RNG, so ``.targets`` comes from the layouts alone, without pixels (10,000 images in
~0.7 s) and does not depend on ``img_size``.

Image ``i`` of split ``s`` is a pure function of ``(seed, s, i)`` and the options: its RNG is seeded from that
triple. Each glyph is rendered from the font once per process, when first used (0.8 ms: ~1.1 s for all of them,
so no disk cache), cropped to its ink and kept as RGBA uint8, with a pyramid of premultiplied copies each sqrt(2)
smaller, made when first needed; one affine resampling from the level just above the wanted size scales and
tilts a glyph. Rendered images are kept in a per-process cache like scenes' (same ``HEADBENCH_SCENES_CACHE_MB``
limit; uint8, 49 KB an image at 128 px), shared by every ``Emoji`` object with the same generation options.
Speed (rough: measured on a shared 2-core machine, CPU time of one process, glyphs already rendered): ~1,400
images/s at 128 px, ~800 at 224 px.

Options:
    classes: number of classes, 1..all (None: all 1,349 with this font and Python 3.11's Unicode names). Default
        100: with ~2.5 objects an image, ~100 positives of each class in the default train split, enough for a
        transformer head probed on a CPU to learn (at all 1,349 classes and the same images, ML-Decoder probed on
        lite0 features stayed near chance after 141 steps, GAP reached 8 mAP; at 100 classes 68 and 51: `bench run
        --backbone tf_efficientnet_lite0 --pretrained --protocol probe --heads gap,mldecoder --seeds 0 --epochs 3
        --img-size 128 --dataset "emoji(classes=C, train_size=3000, val_size=2000)"`, C = None and 100). The
        paper's large-label regime is ``classes=None``.
    min_objects, max_objects: objects per image, 1 <= min_objects <= max_objects <= 16 (default 1..4).
    min_scale, max_scale: a glyph's longest side as a fraction of the image side, 0 < min <= max <= 1
        (default 0.2..0.5).
    max_rotation: the largest tilt in degrees, 0..20 (default 15).
    max_occlusion: the largest fraction of a glyph's box that later glyphs may cover, 0..0.9 (default 0.35).
    train_size, val_size: number of images in each split (default 4000 and 2000: ~100 and ~50 positives per class
        at 100 classes; at all classes give more, e.g. 10000 and 5000 for ~19 and ~9).
    seed: the dataset seed (images and labels; not the classes nor the held-out classes).
    holdout: classes held out for zero-shot evaluation: a number (the last ``holdout`` of the chosen classes in
        class order, so the same for every seed, and spread over categories) or a list of class names. Held-out
        classes never appear in the train split; they appear in val. Listed in ``.unseen``.
    embeddings: "words" (the class names embedded by the runner through bench.datasets.words) or "random" (fixed random
        unit vectors, 384-d: the zero-shot control).
    interpolation: how glyphs are resampled, "bilinear" (default), "bicubic" or "nearest" (a keyword of the
        builder: ``create_dataset`` passes a pretrained backbone's own).

Training augmentation (``train_augment``) is a small brightness and contrast jitter: no flips (they would swap
"leftwards arrow" and "rightwards arrow", "left-facing fist" and "right-facing fist") and no cutout (it could hide
a small glyph whose label stays).

Splits: ``train`` and ``val``.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import struct
import unicodedata
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..registry import unknown_message
from ._base import HeadDataset, register_dataset
from ._common import check_positive, check_split
from .scenes import EMBEDDINGS, RANDOM_EMBEDDING_DIM, RenderCache

DEFAULT_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FONT_FILE = "NotoColorEmoji.ttf"
FONT_PIXEL_SIZE = 109  # the CBDT font's one bitmap strike: Pillow refuses other sizes
KEEP_CATEGORIES = ("So", "Sm")  # other symbols, math symbols (arrows, squares)
EXCLUDED = (
    set(range(0x1F1E6, 0x1F200))  # regional indicators: letters that pair into flags
    | set(range(0x1F9B0, 0x1F9B4))  # hair components (red, curly, white hair, bald): parts of ZWJ sequences
    | {0x00A9, 0x00AE, 0x2122}  # (c) (r) TM: drawn as grey text
)
ORDER_KEY = b"headbench-emoji"  # the class order's hash key: fixed, so the order never changes
SPLITS = {"train": "train", "val": "val"}
_SPLIT_CODE = {"train": 0, "val": 1}
_EMBEDDING_SEED = 1234  # the "random" embeddings, as scenes'
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
MAX_OBJECTS = 16
MAX_ROTATION = 20.0  # under half the 45 degrees between arrow directions
PLACEMENT_TRIES = 16  # positions tried per object
SHRINK = 0.9  # a failed try shrinks the glyph by this factor for the next

RENDER_CACHE = RenderCache()  # (image uint8 (3, S, S), labels) per generation key and index, in this process


class Placed(NamedTuple):
    """One object of a layout, in fractions of the image side: its class index, the top-left corner and side of
    its box (the axis-aligned box of the glyph's square turned by ``angle``), the glyph's longest side (``scale``),
    and the tilt in degrees (counter-clockwise)."""

    cls: int
    x: float
    y: float
    box: float
    scale: float
    angle: float


# ---- the font ----------------------------------------------------------------------------------------------------
def resolve_font(root: Optional[str]) -> str:
    """The font file of a --data-root: None (Debian's path), a font file, or a folder holding NotoColorEmoji.ttf."""
    path = DEFAULT_FONT if root is None else root
    if os.path.isdir(path):
        path = os.path.join(path, FONT_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"emoji: font file {path} not found; install it with `apt-get install "
                         f"fonts-noto-color-emoji` or pass --data-root PATH_TO_{FONT_FILE}")
    return path


def font_id(path: str) -> Tuple[str, int, int]:
    """What identifies a font file's content for the caches: its real path, size and modification time."""
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


def read_cmap(path: str) -> List[int]:
    """Sorted code points a TrueType/OpenType font maps to a glyph, from its cmap's format 12 subtable (all of
    Unicode). ValueError naming the file if it has none."""
    def bad(why: str) -> ValueError:
        return ValueError(f"emoji: cannot read the character map of font {path}: {why}")

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            raise bad("not a font file (too short)")
        (n_tables,) = struct.unpack(">H", head[4:6])
        directory = f.read(16 * n_tables)
        tables = {directory[k:k + 4]: struct.unpack(">II", directory[k + 8:k + 16])
                  for k in range(0, len(directory) - 15, 16)}
        if b"cmap" not in tables:
            raise bad("no cmap table")
        offset, length = tables[b"cmap"]
        f.seek(offset)
        cmap = f.read(length)
    try:
        (n_sub,) = struct.unpack(">H", cmap[2:4])
        subs = {}
        for k in range(n_sub):
            _, _, off = struct.unpack(">HHI", cmap[4 + 8 * k:12 + 8 * k])
            subs.setdefault(struct.unpack(">H", cmap[off:off + 2])[0], off)
        if 12 not in subs:
            raise bad("no format 12 subtable (every font with emoji beyond the Basic Multilingual Plane has one)")
        off = subs[12]
        (n_groups,) = struct.unpack(">I", cmap[off + 12:off + 16])
        groups = np.frombuffer(cmap, dtype=">u4", count=3 * n_groups, offset=off + 16).reshape(-1, 3)
    except (struct.error, ValueError) as e:
        raise bad(f"malformed ({e})") from None
    out = set()
    for start, end, first_glyph in groups.tolist():
        out.update(range(start + (first_glyph == 0), end + 1))  # glyph 0 is .notdef: not mapped
    return sorted(out)


def _order_key(cp: int) -> bytes:
    return hashlib.blake2b(f"{cp:X}".encode(), digest_size=8, key=ORDER_KEY).digest()


@functools.lru_cache(maxsize=4)
def _vocabulary(font: Tuple[str, int, int]) -> Tuple[Tuple[int, str], ...]:
    """(code point, name) of every class of a font (``font_id``), in class order."""
    out = []
    for cp in read_cmap(font[0]):
        ch = chr(cp)
        name = unicodedata.name(ch, "")
        if name and unicodedata.category(ch) in KEEP_CATEGORIES and cp not in EXCLUDED:
            out.append((cp, name.lower()))
    return tuple(sorted(out, key=lambda item: _order_key(item[0])))


def emoji_classes(root: Optional[str] = None) -> List[Tuple[int, str]]:
    """(code point, name) of every class the font of ``root`` (see ``resolve_font``) gives, in class order."""
    return list(_vocabulary(font_id(resolve_font(root))))


@functools.lru_cache(maxsize=4)
def _font(font: Tuple[str, int, int]) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(font[0], FONT_PIXEL_SIZE)
    except OSError as e:
        raise ValueError(f"emoji: cannot load font {font[0]} at pixel size {FONT_PIXEL_SIZE} ({e}); expected the "
                         f"CBDT bitmap font {FONT_FILE} of fonts-noto-color-emoji") from None


_GLYPHS: Dict[tuple, Image.Image] = {}  # (font_id, code point) -> RGBA glyph cropped to its ink, this process


def glyph(font: Tuple[str, int, int], cp: int) -> Image.Image:
    """The colour glyph of a code point as an RGBA image cropped to its alpha box (rendered once per process)."""
    key = (font, cp)
    img = _GLYPHS.get(key)
    if img is None:
        canvas = Image.new("RGBA", (2 * FONT_PIXEL_SIZE, 2 * FONT_PIXEL_SIZE), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((FONT_PIXEL_SIZE // 4, FONT_PIXEL_SIZE // 4), chr(cp), font=_font(font),
                                    embedded_color=True)
        bbox = canvas.getchannel("A").getbbox()
        if bbox is None:
            raise RuntimeError(f"emoji: the font maps U+{cp:04X} but draws nothing for it")
        img = _GLYPHS[key] = canvas.crop(bbox)
    return img


_LEVELS: Dict[tuple, Image.Image] = {}  # (font_id, code point, level, resample) -> premultiplied RGBa glyph


def glyph_level(font: Tuple[str, int, int], cp: int, level: int, resample: int) -> Image.Image:
    """The glyph premultiplied ("RGBa": so resampling makes no dark fringes) and shrunk by sqrt(2) ``level``
    times, from a per-process pyramid: a glyph is drawn from the level just above its size, never shrunk more
    than sqrt(2) by the final (not antialiased) affine resampling."""
    key = (font, cp, level, resample)
    img = _LEVELS.get(key)
    if img is None:
        native = glyph(font, cp).convert("RGBa")
        if level:
            f = 2.0 ** (-level / 2)
            native = native.resize((max(1, round(native.width * f)), max(1, round(native.height * f))), resample)
        img = _LEVELS[key] = native
    return img


def place(font: Tuple[str, int, int], cp: int, obj: Placed, size: int, resample: int
          ) -> Tuple[Image.Image, Tuple[int, int]]:
    """The glyph of ``cp`` scaled and turned as ``obj`` says for an image of ``size`` pixels: an RGBA image of
    the object's box (transparent around the glyph) and its top-left pixel. One affine resampling does both."""
    target = obj.scale * size  # the glyph's longest side, pixels
    native = max(glyph(font, cp).size)
    level = max(0, int(2 * math.log2(max(native / target, 1.0))))  # the smallest level still >= target
    src = glyph_level(font, cp, level, resample)
    side = max(1, round(obj.box * size))
    k = max(src.size) / target  # source pixels per output pixel
    a = math.radians(obj.angle)
    ca, sa = k * math.cos(a), k * math.sin(a)
    # output (x, y) -> source: scale and turn about the centres (counter-clockwise on screen, as Image.rotate)
    c, f = src.width / 2 - (ca - sa) * side / 2, src.height / 2 - (sa + ca) * side / 2
    out = src.transform((side, side), Image.AFFINE, (ca, -sa, c, sa, ca, f), resample=resample)
    return out.convert("RGBA"), (round(obj.x * size), round(obj.y * size))


# ---- backgrounds -------------------------------------------------------------------------------------------------
_LEVELS_256 = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]  # (256, 1): a palette's ramp


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """An RGB image without class content: a flat colour, a linear or radial gradient between two colours, stripes
    or checks of two colours, or smooth colour noise. Two-colour kinds draw a (S, S) uint8 map and let PIL's
    palette turn it into colours (ten times faster than indexing in numpy)."""
    p = rng.random(6)  # every scalar of the background in one draw
    colours = rng.random((2, 3), dtype=np.float32) * np.float32(255.99)  # (2, 3)
    kind = int(5 * p[0])
    if kind == 0:  # flat
        return Image.new("RGB", (size, size), tuple(int(c) for c in colours[0]))
    if kind == 4:  # smooth colour noise: a few random colours, upsampled
        cells = 2 + int(5 * p[1])
        small = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        return Image.fromarray(small).resize((size, size), Image.BICUBIC)
    ramp = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * np.float32(1.0 / size)  # (S,) in (0, 1)
    a = 2 * math.pi * p[1]
    ca, sa = math.cos(a), math.sin(a)
    if kind == 1:  # linear gradient along a random direction, over the full range
        lo, hi = min(ca, 0.0) + min(sa, 0.0), max(ca, 0.0) + max(sa, 0.0)  # range of ca*x + sa*y on [0, 1]^2
        k = 255.0 / (hi - lo)
        level = (np.float32(ca * k) * ramp[None, :] + (np.float32(sa * k) * ramp[:, None] - np.float32(lo * k)))
    elif kind == 2:  # radial gradient around a random centre, 1 at the farthest corner
        cx, cy = p[2], p[3]
        k = 255.0 / math.hypot(max(cx, 1 - cx), max(cy, 1 - cy))
        level = np.sqrt(np.square(ramp - np.float32(cx))[None, :] + np.square(ramp - np.float32(cy))[:, None])
        level *= np.float32(k)
    else:  # stripes or checks of a random period and direction
        f = 1.0 / (0.04 + 0.16 * p[2])  # stripes per image side
        u = (np.float32(ca * f) * ramp[None, :] + (np.float32(sa * f) * ramp[:, None] + np.float32(2 * f)))
        u = u.astype(np.int32)  # (S, S) stripe index, positive
        if p[3] < 0.5:
            u ^= (np.float32(-sa * f) * ramp[None, :] + (np.float32(ca * f) * ramp[:, None] + np.float32(2 * f))
                  ).astype(np.int32)
        level = (u & 1) * 255
    palette = (colours[0] + (colours[1] - colours[0]) * _LEVELS_256).astype(np.uint8)  # (256, 3)
    img = Image.frombuffer("P", (size, size), np.ascontiguousarray(level, dtype=np.uint8), "raw", "P", 0, 1)
    img.putpalette(palette.tobytes())
    return img.convert("RGB")


_NOISE: Dict[tuple, np.ndarray] = {}  # (size, amplitude) -> (3, 3S/2, 3S/2) int16 uniform noise, fixed seed


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """(3, S, S) int16 uniform pixel noise of a random strength (none, +-2, +-4, +-6 grey levels): a random
    window of a fixed table (drawing 3 S^2 random numbers per image would cost more than the rest of the image)."""
    p = rng.random(3)
    amplitude = 2 * int(4 * p[0])
    if amplitude == 0:
        return np.zeros((3, size, size), np.int16)
    table = _NOISE.get((size, amplitude))
    if table is None:
        side = size + size // 2
        table = np.random.default_rng([size, amplitude]).integers(-amplitude, amplitude + 1, (3, side, side),
                                                                  dtype=np.int16)
        _NOISE[(size, amplitude)] = table
    y, x = int(p[1] * (size // 2 + 1)), int(p[2] * (size // 2 + 1))
    return table[:, y:y + size, x:x + size]


def _augment(x: torch.Tensor) -> torch.Tensor:
    """Brightness and contrast jitter (+-0.08, x0.85..1.15); torch's global RNG, seeded per DataLoader worker."""
    b, c = (torch.rand(2) * 2 - 1).tolist()
    mean = x.mean()
    return ((x - mean) * (1 + 0.15 * c) + mean + 0.08 * b).clamp_(0.0, 1.0)


# ---- the dataset -------------------------------------------------------------------------------------------------
def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


def _check_number(name: str, value, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or not (lo < value if lo_open else lo <= value) or not value <= hi:
        raise ValueError(f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value!r}")


@register_dataset("emoji")
class Emoji(HeadDataset):
    """Scenes of colour emoji glyphs; see the module docstring for the options."""

    @staticmethod
    def class_count(classes: Optional[int] = 100, **options) -> Optional[int]:
        """N without reading the font when ``classes`` is given; None otherwise (it depends on the font)."""
        return classes

    def __init__(self, root: Optional[str] = None, split: str = "train", img_size: int = 224,
                 train_augment: bool = False, *, classes: Optional[int] = 100, min_objects: int = 1,
                 max_objects: int = 4, min_scale: float = 0.2, max_scale: float = 0.5, max_rotation: float = 15.0,
                 max_occlusion: float = 0.35, train_size: int = 4000, val_size: int = 2000, seed: int = 0,
                 holdout: Union[int, Sequence[str]] = 0, embeddings: str = "words", interpolation: str = "bilinear"):
        super().__init__()
        self.split = check_split("emoji", split, SPLITS)
        check_positive("img_size", img_size)
        check_positive("train_size", train_size)
        check_positive("val_size", val_size)
        _check_int("max_objects", max_objects, 1, MAX_OBJECTS)
        _check_int("min_objects", min_objects, 1, max_objects)
        _check_number("max_scale", max_scale, 0.0, 1.0, lo_open=True)
        _check_number("min_scale", min_scale, 0.0, max_scale, lo_open=True)
        _check_number("max_rotation", max_rotation, 0.0, MAX_ROTATION)
        _check_number("max_occlusion", max_occlusion, 0.0, 0.9)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if embeddings not in EMBEDDINGS:
            raise ValueError(f"unknown embeddings {embeddings!r}; valid: {', '.join(EMBEDDINGS)}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
        self.font = font_id(resolve_font(root))
        # what the classes and glyphs depend on beyond the spec: the font file and Python's Unicode names (cached
        # features are keyed on it, so a new font or Unicode version never meets stale cached targets)
        self.fingerprint = f"font={self.font[1]}:{self.font[2]} unicode={unicodedata.unidata_version}"
        _font(self.font)  # fails now, with the reason, on a file that is not the bitmap font
        vocabulary = _vocabulary(self.font)
        if classes is not None:
            _check_int("classes", classes, 1, len(vocabulary))
            vocabulary = vocabulary[:classes]
        self.code_points = [cp for cp, _ in vocabulary]
        self.class_names = [name for _, name in vocabulary]
        self.multilabel = True
        self.unseen = tuple(self._resolve_holdout(holdout))
        unseen = set(self.unseen)
        self.seen = np.asarray([k for k in range(len(vocabulary)) if k not in unseen])  # the classes train draws
        self.min_objects, self.max_objects = min_objects, max_objects
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.max_rotation, self.max_occlusion = float(max_rotation), float(max_occlusion)
        self.size = train_size if self.split == "train" else val_size
        self.seed = seed
        self.img_size = img_size
        self.train_augment = train_augment
        self.interpolation = interpolation
        self._targets: Optional[np.ndarray] = None
        if embeddings == "random":  # the zero-shot control: class vectors that carry no meaning
            rng = np.random.default_rng(_EMBEDDING_SEED)
            E = rng.standard_normal((len(vocabulary), RANDOM_EMBEDDING_DIM)).astype(np.float32)
            self.class_embeddings = E / np.linalg.norm(E, axis=1, keepdims=True)

    def _resolve_holdout(self, holdout) -> List[int]:
        n = len(self.class_names)
        if isinstance(holdout, bool):
            raise ValueError(f"holdout must be a number of classes or a list of class names, got {holdout!r}")
        if isinstance(holdout, int):
            if not 0 <= holdout < n:
                raise ValueError(f"holdout must be in 0..{n - 1} (one class at least stays seen), got {holdout}")
            return list(range(n - holdout, n))
        if isinstance(holdout, str):
            holdout = [holdout]
        if isinstance(holdout, (list, tuple)):
            out = set()
            for name in holdout:
                if name not in self.class_names:
                    raise ValueError(unknown_message("held-out class", name, self.class_names))
                out.add(self.class_names.index(name))
            if len(out) == n:
                raise ValueError("holdout cannot hold out every class")
            return sorted(out)
        raise ValueError(f"holdout must be a number of classes or a list of class names, got {holdout!r}")

    def __len__(self) -> int:
        return self.size

    # ---- layout: labels without pixels ------------------------------------------------------------------------
    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLIT_CODE[self.split], i])

    def _layout(self, rng: np.random.Generator) -> List[Placed]:
        """The objects of one image, drawn first from its RNG: classes (train never draws held-out ones), sizes,
        tilts and positions such that later boxes cover at most ``max_occlusion`` of each earlier box in all."""
        allowed = self.seen if self.split == "train" else None
        pool = len(self.class_names) if allowed is None else len(allowed)
        n = min(int(rng.integers(self.min_objects, self.max_objects + 1)), pool)
        picks = rng.choice(pool, size=n, replace=False)
        classes = picks if allowed is None else allowed[picks]
        p = rng.random((n, 2 + 2 * PLACEMENT_TRIES))  # per object: scale, tilt, then (x, y) per try
        log_lo, log_span = math.log(self.min_scale), math.log(self.max_scale / self.min_scale)
        placed: List[Placed] = []
        covered: List[float] = []  # area of each placed box covered by later ones (a sum: at least their union)
        for k in range(n):
            g0 = math.exp(log_lo + log_span * p[k, 0])
            angle = (2 * p[k, 1] - 1) * self.max_rotation
            t = math.radians(angle)
            turn = abs(math.cos(t)) + abs(math.sin(t))  # side of the turned unit square's axis-aligned box
            for j in range(PLACEMENT_TRIES):  # each failed try shrinks the glyph by SHRINK, not below min_scale
                s = min(max(g0 * SHRINK ** j, self.min_scale) * turn, 1.0)  # (a tilted glyph may need to be smaller)
                x, y = p[k, 2 + 2 * j] * (1 - s), p[k, 3 + 2 * j] * (1 - s)
                overlaps = [max(0.0, min(x + s, o.x + o.box) - max(x, o.x))
                            * max(0.0, min(y + s, o.y + o.box) - max(y, o.y)) for o in placed]
                if all(c + a <= self.max_occlusion * o.box * o.box for o, c, a in zip(placed, covered, overlaps)):
                    covered = [c + a for c, a in zip(covered, overlaps)]
                    placed.append(Placed(int(classes[k]), x, y, s, s / turn, angle))  # box, scale
                    covered.append(0.0)
                    break
        return placed

    def layout(self, i: int) -> List[Placed]:
        """The objects of image ``i`` in drawing order (no pixels)."""
        return self._layout(self._rng(i))

    @property
    def targets(self) -> np.ndarray:
        """(S, N) float32 multi-hot, computed from the layouts alone (no drawing) on first use."""
        if self._targets is None:
            t = np.zeros((self.size, len(self.class_names)), dtype=np.float32)
            for i in range(self.size):
                t[i, [o.cls for o in self._layout(self._rng(i))]] = 1.0
            self._targets = t
        return self._targets

    # ---- pixels -----------------------------------------------------------------------------------------------
    def _cache_key(self, i: int) -> tuple:
        """Everything an image depends on: the generation options and its index (not augmentation)."""
        return ("emoji", self.font, len(self.class_names), self.unseen, self.seed, self.split, self.img_size,
                self.min_objects, self.max_objects, self.min_scale, self.max_scale, self.max_rotation,
                self.max_occlusion, self.interpolation, i)

    def render(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Image ``i`` as (3, S, S) uint8 and its sorted class indices (from the process cache when drawn before)."""
        key = self._cache_key(i)
        hit = RENDER_CACHE.get(key)
        if hit is not None:
            return hit
        img, labels = self._draw(i)
        RENDER_CACHE.put(key, img, labels)
        return img, labels

    def _draw(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        rng = self._rng(i)
        objects = self._layout(rng)
        size = self.img_size
        canvas = _background(rng, size)  # RGB
        resample = INTERPOLATIONS[self.interpolation]
        for o in objects:
            img, corner = place(self.font, self.code_points[o.cls], o, size, resample)
            canvas.paste(img, corner, img)  # alpha blending over an opaque canvas: what alpha_composite does
        arr = np.asarray(canvas).transpose(2, 0, 1).astype(np.int16, order="C")  # (3, S, S)
        arr += _noise(rng, size)
        img = np.clip(arr, 0, 255, out=arr).astype(np.uint8)
        return img, np.sort(np.asarray([o.cls for o in objects], dtype=np.int64))

    def __getitem__(self, index: int):
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} images")
        img, labels = self.render(index % self.size)
        x = torch.from_numpy(img).float().div_(255.0)  # (3, S, S)
        if self.train_augment:
            x = _augment(x)
        y = torch.zeros(len(self.class_names), dtype=torch.float32)
        y[torch.from_numpy(labels)] = 1.0
        return x, y
