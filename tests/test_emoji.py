"""The ``emoji`` dataset: classes from the real Noto Color Emoji font (Debian's fonts-noto-color-emoji), layouts and
labels, determinism, zero-shot holdout, options, and the font file format read by a file written here."""
from __future__ import annotations

import os
import struct
import unicodedata

import numpy as np
import pytest
import torch

from bench.datasets import create_dataset, dataset_num_classes
from bench.datasets import emoji as E

# As the real Fashion-MNIST tests: skipped, with the reason, where the Debian package is not installed (CI installs
# it: .ci/run).
needs_font = pytest.mark.skipif(
    not os.path.isfile(E.DEFAULT_FONT),
    reason=f"Noto Color Emoji font not at {E.DEFAULT_FONT} (apt-get install fonts-noto-color-emoji)")

NOT_CLASSES = (set(range(0x1F1E6, 0x1F200))  # regional indicators
               | set(range(0xE0000, 0xE0080))  # tags
               | set(range(0x1F3FB, 0x1F400))  # skin-tone modifiers
               | set(range(0x1F9B0, 0x1F9B4))  # hair components
               | {0x20E3, 0xFE0E, 0xFE0F, 0x200D, 0x20, 0x23, 0x2A} | set(range(0x30, 0x3A)))  # keycaps, VS, ZWJ


def small(spec_options: str = "", split: str = "train", img_size: int = 48, **kw):
    """A small emoji dataset: 24 images a split unless ``spec_options`` says otherwise."""
    sizes = ", ".join(f"{k}=24" for k in ("train_size", "val_size") if k not in spec_options)
    opts = ", ".join(o for o in (sizes, spec_options) if o)
    return create_dataset(f"emoji({opts})", split=split, img_size=img_size, **kw)


# ---- classes -----------------------------------------------------------------------------------------------------
@needs_font
def test_classes_are_named_pictographs_of_the_font():
    classes = E.emoji_classes()
    print(f"emoji classes: {len(classes)} (Unicode {unicodedata.unidata_version})")
    assert 1000 <= len(classes) <= 1500
    cps = [cp for cp, _ in classes]
    assert len(set(cps)) == len(cps) and not set(cps) & NOT_CLASSES
    assert set(cps) <= set(E.read_cmap(E.DEFAULT_FONT))
    assert all(name == unicodedata.name(chr(cp)).lower() for cp, name in classes)
    names = [name for _, name in classes]
    assert {"grinning face", "red apple", "dog face", "rocket", "black heart suit"} <= set(names)
    assert not {"copyright sign", "trade mark sign", "digit zero"} & set(names)
    # the documented order: a fixed hash of the code point, so the first 50 are not all faces
    assert cps == sorted(cps, key=E._order_key)
    assert sum("face" in n for n in names[:50]) < 20
    ds = small("classes=50")
    assert ds.class_names == names[:50] and ds.num_classes == 50


def test_class_count_needs_no_font_and_no_rendering(monkeypatch):
    monkeypatch.setattr(E, "glyph", lambda *a: pytest.fail("rendered a glyph"))
    assert dataset_num_classes("emoji(classes=40)", root="/nowhere/NotoColorEmoji.ttf") == 40
    assert dataset_num_classes("emoji", root="/nowhere/NotoColorEmoji.ttf") == 100  # the default
    if os.path.isfile(E.DEFAULT_FONT):
        assert dataset_num_classes("emoji(classes=None)") == len(E.emoji_classes())
        assert small("classes=30").targets.shape == (24, 30)  # labels from the layouts alone


# ---- the font ----------------------------------------------------------------------------------------------------
def test_missing_font_says_how_to_install_it(tmp_path):
    for root, path in ((tmp_path / "nowhere.ttf", tmp_path / "nowhere.ttf"), (tmp_path, tmp_path / E.FONT_FILE)):
        with pytest.raises(ValueError) as err:
            create_dataset("emoji", root=str(root))
        msg = str(err.value)
        assert msg == (f"emoji: font file {path} not found; install it with `apt-get install fonts-noto-color-emoji` "
                       f"or pass --data-root PATH_TO_NotoColorEmoji.ttf")


def write_font(path, groups):
    """A minimal sfnt file: a table directory holding one cmap table with one format 12 subtable."""
    sub = struct.pack(">HHIII", 12, 0, 16 + 12 * len(groups), 0, len(groups))
    sub += b"".join(struct.pack(">III", *g) for g in groups)
    cmap = struct.pack(">HH", 0, 1) + struct.pack(">HHI", 3, 10, 12) + sub
    head = struct.pack(">IHHHH", 0x00010000, 1, 16, 0, 0)
    directory = b"cmap" + struct.pack(">III", 0, 12 + 16, len(cmap))
    path.write_bytes(head + directory + cmap)


def test_cmap_of_a_font_file_written_here(tmp_path):
    font = tmp_path / "tiny.ttf"
    write_font(font, [(0x41, 0x43, 1), (0x1F600, 0x1F601, 0), (0x2600, 0x2600, 7)])  # glyph 0 is .notdef
    assert E.read_cmap(str(font)) == [0x41, 0x42, 0x43, 0x2600, 0x1F601]
    garbage = tmp_path / "garbage.ttf"
    garbage.write_bytes(b"\x00\x01\x00\x00\x00\x00" + b"\x00" * 20)
    with pytest.raises(ValueError, match=r"emoji: cannot read the character map of font .*garbage.ttf: no cmap"):
        E.read_cmap(str(garbage))
    with pytest.raises(ValueError, match=r"emoji: cannot .*tiny.ttf.*CBDT bitmap font NotoColorEmoji.ttf"):
        create_dataset("emoji", root=str(font))  # a font, but not the bitmap one: fails when built


@needs_font
def test_glyphs_are_in_colour():
    font = E.font_id(E.DEFAULT_FONT)
    rgba = np.asarray(E.glyph(font, 0x1F600)).astype(np.int32)  # grinning face, cropped to its ink
    assert rgba.shape[2] == 4 and min(rgba.shape[:2]) > 80
    ink = rgba[rgba[:, :, 3] > 128][:, :3]
    chroma = ink.max(1) - ink.min(1)
    assert ink.shape[0] > 3000 and np.median(chroma) > 100  # yellow: not a grey glyph
    assert rgba[0, :, 3].max() > 0 and rgba[:, 0, 3].max() > 0  # cropped to its alpha box


# ---- images and labels -------------------------------------------------------------------------------------------
@needs_font
def test_images_are_pure_functions_of_seed_split_index():
    a = small("seed=3", img_size=64)
    xs = [a[i][0] for i in range(6)]
    for x in xs:
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.01
    E.RENDER_CACHE.clear()  # a fresh object, drawn again
    b = small("seed=3", img_size=64)
    assert all(torch.equal(b[i][0], xs[i]) for i in (5, 0, 3))  # any order
    assert E.RENDER_CACHE.hits == 0
    assert torch.equal(b[5][0], xs[5]) and E.RENDER_CACHE.hits == 1  # the second time from the cache
    c = small("seed=4", img_size=64)
    assert not any(torch.equal(c[i][0], xs[i]) for i in range(6))
    v = small("seed=3", split="val", img_size=64)
    assert not torch.equal(v[0][0], xs[0])
    with pytest.raises(IndexError):
        a[24]


def visible_fractions(ds, i):
    """Per object of image i, the fraction of its glyph's ink (alpha > 0) that no later glyph covers."""
    size = ds.img_size
    masks = []
    for o in ds.layout(i):
        img, (x, y) = E.place(ds.font, ds.code_points[o.cls], o, size, E.INTERPOLATIONS["bilinear"])
        m = np.zeros((size + img.height, size + img.width), bool)  # room for a glyph over the edge
        m[y:y + img.height, x:x + img.width] = np.asarray(img)[:, :, 3] > 0
        masks.append(m[:size, :size])
    out = []
    for k, m in enumerate(masks):
        later = np.any(masks[k + 1:], axis=0) if k + 1 < len(masks) else np.zeros_like(m)
        out.append((m & ~later).sum() / max(1, m.sum()))
    return out


@needs_font
def test_labels_are_exactly_the_objects_placed_and_each_stays_visible():
    ds = small("max_objects=6, train_size=60", img_size=96)
    t = ds.targets
    assert t.shape == (60, ds.num_classes) and t.dtype == np.float32
    assert np.array_equal(t, torch.stack([ds[i][1] for i in range(60)]).numpy())
    counts = t.sum(1)
    assert counts.min() >= 1 and counts.max() <= 6 and len(set(counts.tolist())) >= 4
    worst = 1.0
    for i in range(60):
        objects = ds.layout(i)
        assert sorted(o.cls for o in objects) == np.flatnonzero(t[i]).tolist()  # distinct classes, as labelled
        for k, o in enumerate(objects):
            assert 0 <= o.x and o.x + o.box <= 1 + 1e-9 and 0 <= o.y and o.y + o.box <= 1 + 1e-9
            assert ds.min_scale - 1e-9 <= o.scale <= ds.max_scale + 1e-9 and abs(o.angle) <= ds.max_rotation
            covered = sum(max(0.0, min(o.x + o.box, p.x + p.box) - max(o.x, p.x))
                          * max(0.0, min(o.y + o.box, p.y + p.box) - max(o.y, p.y)) for p in objects[k + 1:])
            assert covered <= ds.max_occlusion * o.box ** 2 + 1e-9
        worst = min([worst] + visible_fractions(ds, i))
    print(f"least visible glyph: {worst:.2f} of its ink")
    assert worst >= 0.4


@needs_font
def test_holdout_is_fixed_absent_from_train_and_present_in_val():
    spec = "classes=40, holdout=8, train_size=300, val_size=300"
    train = create_dataset(f"emoji({spec})", img_size=32)
    val = create_dataset(f"emoji({spec})", split="val", img_size=32)
    assert train.unseen == val.unseen == tuple(range(32, 40))
    assert create_dataset(f"emoji({spec}, seed=7)", img_size=32).unseen == train.unseen
    assert train.targets[:, list(train.unseen)].sum() == 0
    assert (val.targets[:, list(val.unseen)].sum(0) > 0).all()
    named = small(f"classes=40, holdout={[train.class_names[3], train.class_names[9]]!r}")
    assert named.unseen == (3, 9) and named.targets[:, [3, 9]].sum() == 0


@needs_font
def test_embeddings_interpolation_and_augmentation():
    assert small("classes=20").class_embeddings is None  # "words": the runner embeds the names
    E_ = small("classes=20, embeddings='random'").class_embeddings
    assert E_.shape == (20, E.RANDOM_EMBEDDING_DIM) and np.allclose(np.linalg.norm(E_, axis=1), 1.0, atol=1e-5)
    bilinear = E.Emoji(split="train", img_size=64, train_size=4, seed=1)
    bicubic = E.Emoji(split="train", img_size=64, train_size=4, seed=1, interpolation="bicubic")
    assert np.array_equal(bilinear.targets, bicubic.targets)
    assert not torch.equal(bilinear[0][0], bicubic[0][0])
    torch.manual_seed(0)
    aug = small(img_size=64, train_augment=True)
    x, y = aug[1]
    assert x.shape == (3, 64, 64) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(y, small()[1][1]) and not torch.equal(x, small(img_size=64)[1][0])


# ---- options -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ("min_objects=0", r"min_objects must be an integer in 1\.\.4, got 0"),
    ("min_objects=5", r"min_objects must be an integer in 1\.\.4, got 5"),
    ("max_objects=17", r"max_objects must be an integer in 1\.\.16, got 17"),
    ("max_objects=True", r"max_objects must be an integer in 1\.\.16, got True"),
    ("max_scale=0", r"max_scale must be a number in \(0, 1\], got 0"),
    ("min_scale=0.6", r"min_scale must be a number in \(0, 0\.5\], got 0\.6"),
    ("max_rotation=30", r"max_rotation must be a number in \[0, 20\], got 30"),
    ("max_occlusion=1.0", r"max_occlusion must be a number in \[0, 0\.9\], got 1\.0"),
    ("train_size=0", r"train_size must be a positive integer, got 0"),
    ("seed=-1", r"seed must be a non-negative integer, got -1"),
    ("embeddings='glove'", r"unknown embeddings 'glove'; valid: words, random"),
    ("clases=3", r"unknown option of dataset 'emoji' 'clases'.*'classes'"),
])
def test_bad_options_name_the_value_and_the_valid_range(options, message):
    with pytest.raises(ValueError, match=message):
        create_dataset(f"emoji({options})", root="/nowhere")  # checked before the font is looked for


def test_bad_split_and_interpolation():
    with pytest.raises(ValueError, match=r"unknown split 'test' for dataset 'emoji'; valid: train, val"):
        create_dataset("emoji", split="test")
    with pytest.raises(ValueError, match=r"unknown interpolation 'lanczos'; valid: bilinear, bicubic, nearest"):
        E.Emoji(interpolation="lanczos")


@needs_font
@pytest.mark.parametrize("options, message", [
    ("classes=0", r"classes must be an integer in 1\.\.\d{4}, got 0"),
    ("classes=100000", r"classes must be an integer in 1\.\.\d{4}, got 100000"),
    ("classes=10, holdout=10", r"holdout must be in 0\.\.9 \(one class at least stays seen\), got 10"),
    ("classes=10, holdout='unicorn face'", r"unknown held-out class 'unicorn face'"),
])
def test_bad_class_options(options, message):
    with pytest.raises(ValueError, match=message):
        create_dataset(f"emoji({options})")


@needs_font
def test_the_fingerprint_keys_cached_features_on_the_font_and_unicode_version():
    """The classes depend on the font file and Python's Unicode names, not only on the spec: cached features are
    keyed on both, so another font or Unicode version never meets stale cached targets."""
    import unicodedata

    from bench.train.features import feature_cache_key
    from bench.backbones.model import create_backbone

    ds = create_dataset("emoji(classes=5, train_size=4, val_size=4)", "val", img_size=32)
    assert unicodedata.unidata_version in ds.fingerprint and "font=" in ds.fingerprint
    bb = create_backbone("test_resnet")
    keys = {feature_cache_key(bb, backbone_name="test_resnet", dataset_spec=ds.spec, split="val", img_size=32,
                              data_fingerprint=fp) for fp in (ds.fingerprint, ds.fingerprint + "x", "")}
    assert len(keys) == 3
