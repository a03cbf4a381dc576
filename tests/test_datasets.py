"""Datasets: the registry contract, `scenes`, and every real format on a tiny copy written here in tmp_path."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bench.datasets import HeadDataset, create_dataset, list_datasets
from bench.datasets.fashion import CLASS_NAMES as FASHION_NAMES, DEFAULT_ROOT as FASHION_ROOT

ALL = ["coco2014", "emoji", "fashion-mnist", "fashion-mosaic", "imagefolder", "nuswide-zsl", "openimages", "scenes",
       "voc2007"]


# ---- helpers: real files -----------------------------------------------------------------------------------------
def write_jpeg(path, size=(40, 30), colour=(200, 30, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def write_corrupt_jpeg(path):
    """The first 200 bytes of a real JPEG: PIL reads the header, then fails to decode."""
    write_jpeg(path, size=(64, 64))
    with open(path, "rb") as f:
        head = f.read(200)
    with open(path, "wb") as f:
        f.write(head)


def check_item(ds: HeadDataset, i: int, size: int):
    x, y = ds[i]
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    if ds.multilabel:
        assert y.shape == (ds.num_classes,) and y.dtype == torch.float32
    else:
        assert y.dtype == torch.int64 and y.dim() == 0
    return x, y


# ---- registry ----------------------------------------------------------------------------------------------------
def test_every_dataset_is_registered():
    assert list_datasets() == ALL


def test_unknown_dataset_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'scene'; did you mean 'scenes'.*valid: coco2014"):
        create_dataset("scene")


def test_unknown_option_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option of dataset 'scenes' 'clases'.*'classes'.*holdout"):
        create_dataset("scenes(clases=10)")


def test_unknown_split_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown split 'test' for dataset 'scenes'; valid: train, val"):
        create_dataset("scenes", split="test")


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("scenes", "fashion-mnist", "fashion-mosaic", "emoji")])
def test_file_datasets_need_a_root(name, tmp_path):
    with pytest.raises(ValueError, match="--data-root"):
        create_dataset(name, root=None)
    with pytest.raises(ValueError, match="expected"):
        create_dataset(name, root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="expected"):  # a folder, but not the layout
        create_dataset(name, root=str(tmp_path))


# ---- scenes ------------------------------------------------------------------------------------------------------
def test_scenes_vocabulary_and_spec():
    ds = create_dataset("scenes(classes=48, holdout=8)", img_size=32)
    assert ds.spec == "scenes(classes=48, holdout=8)"
    assert ds.num_classes == 48 and len(set(ds.class_names)) == 48
    assert ds.class_names[:2] == ["red circle", "red square"]
    colours = {n.split()[0] for n in ds.class_names}
    shapes = {n.split()[1] for n in ds.class_names}
    assert len(colours) == 8 and len(shapes) == 6
    # every held-out pair's colour and shape remain seen in other classes (compositional zero-shot)
    seen = [ds.class_names[k] for k in range(48) if k not in ds.unseen]
    assert len(ds.unseen) == 8
    for k in ds.unseen:
        c, s = ds.class_names[k].split()
        assert any(n.startswith(c + " ") for n in seen) and any(n.endswith(" " + s) for n in seen)
    assert create_dataset("scenes(classes=80)").class_names[-1] == "white hexagon"
    with pytest.raises(ValueError, match="classes must be an integer in 1..80"):
        create_dataset("scenes(classes=81)")
    with pytest.raises(ValueError, match="too many"):
        create_dataset("scenes(classes=4, holdout=3)")


def test_scenes_deterministic_by_seed_and_index():
    a = create_dataset("scenes(seed=3, train_size=8)", img_size=48)
    b = create_dataset("scenes(seed=3, train_size=8)", img_size=48)
    c = create_dataset("scenes(seed=4, train_size=8)", img_size=48)
    for i in (0, 5, 7):
        xa, ya = check_item(a, i, 48)
        xb, yb = b[i]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])
    assert torch.equal(a[7][0], a[-1][0])  # index order does not matter: image i is a function of (seed, split, i)
    val = create_dataset("scenes(seed=3, val_size=8)", split="val", img_size=48)
    assert not torch.equal(a[0][0], val[0][0])
    with pytest.raises(IndexError):
        a[8]


def test_scenes_targets_match_items_and_counts():
    ds = create_dataset("scenes(train_size=64)", img_size=24)
    assert ds.targets.shape == (64, 48) and ds.targets.dtype == np.float32
    for i in range(0, 64, 7):
        assert np.array_equal(ds[i][1].numpy(), ds.targets[i])
    counts = ds.targets.sum(1)
    assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts.tolist())) == 4
    assert len(create_dataset("scenes(train_size=64)")) == 64
    one = create_dataset("scenes(max_objects=1, train_size=16)", img_size=24)
    assert (one.targets.sum(1) == 1).all()


def test_scenes_objects_are_drawn():
    """Each image holds its objects: colour pixels of each labelled class's colour are present."""
    ds = create_dataset("scenes(train_size=20, distractors=False)", img_size=64)
    from bench.datasets.scenes import COLOURS
    for i in range(20):
        img, labels = ds.render(i)
        for k in labels:
            c, _ = ds.pairs[k]
            rgb = np.asarray(COLOURS[c][1], np.float32)[:, None, None]
            close = (np.abs(img - rgb).max(0) < 0.2).sum()
            assert close > 20, (i, ds.class_names[k], close)


def test_scenes_holdout_never_positive_in_train():
    train = create_dataset("scenes(holdout=6, train_size=400)", img_size=16)
    val = create_dataset("scenes(holdout=6, val_size=400)", split="val", img_size=16)
    unseen = list(train.unseen)
    assert unseen == list(val.unseen) and len(unseen) == 6
    assert train.targets[:, unseen].sum() == 0
    assert (val.targets[:, unseen].sum(0) > 0).all()  # every unseen class appears in val
    named = create_dataset('scenes(holdout=["red circle", "blue star"], classes=80)')
    assert [named.class_names[k] for k in named.unseen] == ["red circle", "blue star"]
    with pytest.raises(ValueError, match="unknown held-out class 'red circel'; did you mean 'red circle'"):
        create_dataset('scenes(holdout=["red circel"])')


def test_scenes_pickles_and_loads_with_workers():
    ds = create_dataset("scenes(train_size=16, seed=1)", img_size=32)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3][0], ds[3][0])
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    xs, ys = zip(*loader)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (16, 3, 32, 32) and y.shape == (16, 48)
    assert torch.equal(x[9], ds[9][0]) and np.array_equal(y.numpy(), ds.targets)


def test_scenes_any_resolution_and_augment():
    for size in (17, 96):
        check_item(create_dataset("scenes", img_size=size), 0, size)
    aug = create_dataset("scenes(train_size=4)", img_size=40, train_augment=True)
    torch.manual_seed(0)
    outs = [aug[0][0] for _ in range(8)]
    check_item(aug, 0, 40)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # flip / cutout vary between epochs


# ---- Fashion-MNIST (tiny IDX files written here) -------------------------------------------------------------------
def write_idx(path, array, gz):
    array = np.asarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    opener = gzip.open if gz else open
    with opener(str(path) + (".gz" if gz else ""), "wb") as f:
        f.write(data)


@pytest.fixture
def fashion_root(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 12, True), ("t10k", 5, False)):  # one gzipped split, one raw
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = np.arange(n) % 10
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return str(tmp_path)


def test_fashion_mnist_tiny_idx(fashion_root):
    train = create_dataset("fashion-mnist", root=fashion_root, img_size=32)
    val = create_dataset("fashion-mnist", split="val", root=fashion_root, img_size=32)
    assert (len(train), len(val)) == (12, 5)
    assert train.class_names == FASHION_NAMES and train.class_names[0] == "T-shirt/top"
    assert not train.multilabel and train.targets.tolist() == [i % 10 for i in range(12)]
    x, y = check_item(train, 3, 32)
    assert int(y) == 3 and torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # grey repeated to RGB
    native = create_dataset("fashion-mnist", root=fashion_root, img_size=28)[3][0][0]
    assert torch.allclose(native * 255, torch.from_numpy(train.images[3]).float())
    assert len(create_dataset("fashion-mnist(train_size=4)", root=fashion_root)) == 4
    with pytest.raises(ValueError, match="train_size=99 is more than the 12 images"):
        create_dataset("fashion-mnist(train_size=99)", root=fashion_root)


def test_fashion_malformed_and_missing(tmp_path, fashion_root):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in os.listdir(fashion_root):
        if os.path.isfile(os.path.join(fashion_root, name)):
            with open(os.path.join(fashion_root, name), "rb") as src, open(bad / name, "wb") as dst:
                dst.write(src.read())
    with open(bad / "t10k-images-idx3-ubyte", "r+b") as f:  # claim 6 images but hold 5
        f.seek(4)
        f.write(struct.pack(">I", 6))
    with pytest.raises(ValueError, match=r"malformed IDX file .*t10k-images-idx3-ubyte: .*expected 4704"):
        create_dataset("fashion-mnist", split="val", root=str(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"apt-get install dataset-fashion-mnist.*--data-root"):
        create_dataset("fashion-mnist", root=str(empty))
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        create_dataset("fashion-mosaic", root=str(tmp_path / "nowhere"))


def test_fashion_mosaic_tiny(fashion_root):
    a = create_dataset("fashion-mosaic(train_size=30, seed=2)", root=fashion_root, img_size=56)
    b = create_dataset("fashion-mosaic(train_size=30, seed=2)", root=fashion_root, img_size=56)
    c = create_dataset("fashion-mosaic(train_size=30, seed=5)", root=fashion_root, img_size=56)
    assert a.multilabel and len(a) == 30 and a.targets.shape == (30, 10)
    for i in range(30):
        x, y = a[i]
        assert torch.equal(x, b[i][0]) and np.array_equal(y.numpy(), a.targets[i])
        cells = a.cells(i)
        assert (cells >= 0).any() and set(np.flatnonzero(a.targets[i])) == set(a.labels[cells[cells >= 0]])
    assert not np.array_equal(a.targets, c.targets)
    assert (a.targets.sum(1) >= 1).all() and a.targets.sum(1).max() > 1
    x, _ = check_item(a, 0, 56)
    cells = a.cells(0)
    for k, src in enumerate(cells):  # at img_size = 2 x 28 each cell is its source image, or empty
        r, col = divmod(k, 2)
        cell = x[0, r * 28:(r + 1) * 28, col * 28:(col + 1) * 28] * 255
        expected = np.zeros((28, 28)) if src < 0 else a.images[src]
        assert torch.allclose(cell, torch.from_numpy(np.asarray(expected, np.float32)), atol=1e-3)
    with pytest.raises(ValueError, match="empty must be a probability"):
        create_dataset("fashion-mosaic(empty=1.0)", root=fashion_root)


needs_real_fashion = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FASHION_ROOT, "train-labels-idx1-ubyte.gz"))
    and not os.path.isfile(os.path.join(FASHION_ROOT, "train-labels-idx1-ubyte")),
    reason=f"Fashion-MNIST IDX files not in {FASHION_ROOT} (apt-get install dataset-fashion-mnist)")


@needs_real_fashion
def test_fashion_mnist_real_debian_files():
    train = create_dataset("fashion-mnist", img_size=32)
    val = create_dataset("fashion-mnist", split="val", img_size=32)
    assert (len(train), len(val)) == (60000, 10000)
    assert np.bincount(train.targets).tolist() == [6000] * 10 and np.bincount(val.targets).tolist() == [1000] * 10
    check_item(train, 0, 32)
    mosaic = create_dataset("fashion-mosaic(val_size=50)", split="val", img_size=64)
    assert mosaic.targets.shape == (50, 10) and (mosaic.targets.sum(1) >= 1).all()
    check_item(mosaic, 49, 64)


# ---- COCO 2014 -----------------------------------------------------------------------------------------------------
def make_coco(root, corrupt=True):
    cats = [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}]
    images, anns = [], []
    for split in ("train2014", "val2014"):
        images = [{"id": i, "file_name": f"COCO_{split}_{i:012d}.jpg"} for i in (5, 7, 9, 11)]
        anns = [{"id": 1, "image_id": 5, "category_id": 1}, {"id": 2, "image_id": 5, "category_id": 3},
                {"id": 3, "image_id": 7, "category_id": 2}, {"id": 4, "image_id": 9, "category_id": 1},
                {"id": 5, "image_id": 9, "category_id": 1}]  # image 11 has no annotation
        os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
        for im in images:
            write_jpeg(os.path.join(root, split, im["file_name"]), colour=(im["id"] * 20, 0, 0))
    if corrupt:
        write_corrupt_jpeg(os.path.join(root, "train2014", "COCO_train2014_000000000007.jpg"))
    return str(root)


def test_coco_tiny(tmp_path):
    root = make_coco(tmp_path)
    ds = create_dataset("coco2014", split="val", root=root, img_size=32)
    assert ds.class_names == ["person", "bicycle", "car"]  # category-id order
    assert len(ds) == 3 and [os.path.basename(p)[-6:-4] for p in ds.paths] == ["05", "07", "09"]
    assert ds.targets.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]
    check_item(ds, 0, 32)
    assert ds.skipped == []


def test_corrupt_jpeg_is_skipped_and_counted(tmp_path):
    root = make_coco(tmp_path)
    ds = create_dataset("coco2014", split="train", root=root, img_size=16)
    with pytest.warns(RuntimeWarning, match="skipped image .*000000000007.jpg"):
        x, y = ds[1]  # the corrupt one: the next valid image comes back, with its own target
    assert torch.equal(y, torch.from_numpy(ds.targets[2])) and torch.equal(x, ds[2][0])
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("000000000007.jpg") and ds.skipped[0][1]
    ds[1]  # known bad: no second record
    assert len(ds.skipped) == 1


def test_skips_in_dataloader_workers_are_counted(tmp_path):
    root = make_coco(tmp_path)
    ds = create_dataset("coco2014", split="train", root=root, img_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(DataLoader(ds, batch_size=1, num_workers=2))
    assert len(batches) == 3
    assert [p for p, _ in ds.skipped] == [ds.paths[1]]


def test_coco_malformed(tmp_path):
    root = make_coco(tmp_path, corrupt=False)
    path = os.path.join(root, "annotations", "instances_val2014.json")
    with open(path, "w") as f:
        f.write('{"images": [')
    with pytest.raises(ValueError, match=r"malformed COCO annotation file .*instances_val2014.json: not valid JSON"):
        create_dataset("coco2014", split="val", root=root)
    with open(path, "w") as f:
        json.dump({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "x"}],
                   "annotations": [{"id": 9, "image_id": 1, "category_id": 4}]}, f)
    with pytest.raises(ValueError, match=r"instances_val2014.json: annotation 9 has category_id 4"):
        create_dataset("coco2014", split="val", root=root)
    with open(path, "w") as f:
        json.dump({"images": [{"id": 1}], "categories": [], "annotations": []}, f)
    with pytest.raises(ValueError, match=r"instances_val2014.json: an entry lacks the field 'file_name'"):
        create_dataset("coco2014", split="val", root=root)


# ---- VOC 2007 ------------------------------------------------------------------------------------------------------
VOC_XML = "<annotation><filename>{id}.jpg</filename>{objects}</annotation>"
VOC_OBJ = "<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult></object>"


def make_voc(root):
    voc = os.path.join(root, "VOCdevkit", "VOC2007")
    objects = {"000001": [("dog", 0), ("person", 1)],                      # person only difficult -> -1
               "000002": [("car", 1), ("car", 0), ("diningtable", 0)],     # car also non-difficult -> 1
               "000003": [("tvmonitor", 0)],
               "000004": [("cat", 0)]}
    os.makedirs(os.path.join(voc, "Annotations"))
    os.makedirs(os.path.join(voc, "ImageSets", "Main"))
    for i, objs in objects.items():
        body = "".join(VOC_OBJ.format(name=n, d=d) for n, d in objs)
        with open(os.path.join(voc, "Annotations", f"{i}.xml"), "w") as f:
            f.write(VOC_XML.format(id=i, objects=body))
        write_jpeg(os.path.join(voc, "JPEGImages", f"{i}.jpg"))
    with open(os.path.join(voc, "ImageSets", "Main", "trainval.txt"), "w") as f:
        f.write("000001\n000002\n000003\n")
    with open(os.path.join(voc, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("000004\n")
    return voc


def test_voc_tiny_and_difficult_policy(tmp_path):
    voc = make_voc(tmp_path)
    ds = create_dataset("voc2007", root=str(tmp_path), img_size=24)
    names = ds.class_names
    assert len(names) == 20 and "dining table" in names and "tv monitor" in names
    assert len(ds) == 3 and len(create_dataset("voc2007", split="val", root=str(tmp_path))) == 1
    t = {names[k]: v for k, v in enumerate(ds.targets[0]) if v}
    assert t == {"dog": 1.0, "person": -1.0}
    t = {names[k]: v for k, v in enumerate(ds.targets[1]) if v}
    assert t == {"car": 1.0, "dining table": 1.0}
    check_item(ds, 2, 24)
    for alt in (os.path.dirname(voc), voc):  # root may also be VOCdevkit or VOC2007
        assert len(create_dataset("voc2007", root=alt)) == 3


def test_voc_malformed(tmp_path):
    voc = make_voc(tmp_path)
    bad = os.path.join(voc, "Annotations", "000002.xml")
    with open(bad, "w") as f:
        f.write("<annotation><object><name>dog</name>")
    with pytest.raises(ValueError, match=r"malformed VOC annotation file .*000002.xml"):
        create_dataset("voc2007", root=str(tmp_path))
    with open(bad, "w") as f:
        f.write(VOC_XML.format(id="000002", objects=VOC_OBJ.format(name="dogg", d=0)))
    with pytest.raises(ValueError, match=r"000002.xml: unknown class name 'dogg'"):
        create_dataset("voc2007", root=str(tmp_path))
    os.remove(bad)
    with pytest.raises(ValueError, match=r"missing VOC annotation file .*000002.xml"):
        create_dataset("voc2007", root=str(tmp_path))


# ---- NUS-WIDE zero-shot ------------------------------------------------------------------------------------------
def make_nuswide(root, seen=("sky", "water", "tree", "car"), unseen=("animal", "beach")):
    root = str(root)
    os.makedirs(os.path.join(root, "ImageList"))
    os.makedirs(os.path.join(root, "labels"))
    os.makedirs(os.path.join(root, "word_embedding"))
    n = len(seen) + len(unseen)
    rng = np.random.default_rng(0)
    for split, count in (("Train", 4), ("Test", 3)):
        files = [f"actor\\{split}_{i}.jpg" for i in range(count)]  # NUS-WIDE's lists use backslashes
        with open(os.path.join(root, "ImageList", f"{split}Imagelist.txt"), "w") as f:
            f.write("\n".join(files) + "\n")
        for name in files:
            write_jpeg(os.path.join(root, "Flickr", name.replace("\\", "/")))
        labels = (np.arange(count * n).reshape(count, n) % 3 == 0).astype(np.uint8)
        np.save(os.path.join(root, "labels", f"{split.lower()}_labels.npy"), labels)
    for kind, names in (("seen", seen), ("unseen", unseen)):
        with open(os.path.join(root, "labels", f"{kind}_labels.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    np.save(os.path.join(root, "word_embedding", "word_vectors.npy"), rng.normal(size=(n, 300)))
    return root


def test_nuswide_tiny(tmp_path):
    root = make_nuswide(tmp_path)
    train = create_dataset("nuswide-zsl", root=root, img_size=20)
    val = create_dataset("nuswide-zsl", split="val", root=root, img_size=20)
    assert train.class_names == ["sky", "water", "tree", "car", "animal", "beach"]
    assert tuple(train.unseen) == (4, 5) and tuple(val.unseen) == (4, 5)
    assert train.class_embeddings.shape == (6, 300) and train.class_embeddings.dtype == np.float32
    assert (len(train), len(val)) == (4, 3)
    labels = np.load(os.path.join(root, "labels", "test_labels.npy"))
    assert np.array_equal(val.targets, labels)
    assert (train.targets[:, 4:] == -1).all() and set(np.unique(train.targets[:, :4])) == {0.0, 1.0}
    x, y = check_item(train, 1, 20)
    assert (y[4:] == -1).all()


def test_nuswide_malformed(tmp_path):
    root = make_nuswide(tmp_path)
    path = os.path.join(root, "labels", "train_labels.npy")
    np.save(path, np.zeros((3, 6), np.uint8))  # 4 images listed
    with pytest.raises(ValueError, match=r"malformed NUS-WIDE file .*train_labels.npy: shape \(3, 6\), expected "
                                         r"\(4, 6\)"):
        create_dataset("nuswide-zsl", root=root)
    with open(path, "wb") as f:
        f.write(b"not numpy")
    with pytest.raises(ValueError, match=r"malformed NUS-WIDE file .*train_labels.npy: not a readable"):
        create_dataset("nuswide-zsl", root=root)
    np.save(os.path.join(root, "word_embedding", "word_vectors.npy"), np.zeros((5, 300)))
    with pytest.raises(ValueError, match=r"word_vectors.npy: shape \(5, 300\)"):
        create_dataset("nuswide-zsl", split="val", root=root)


# ---- Open Images ---------------------------------------------------------------------------------------------------
def make_openimages(root, header=False):
    root = str(root)
    with open(os.path.join(root, "class-descriptions.csv"), "w") as f:
        f.write(("LabelName,DisplayName\n" if header else "") +
                '/m/01,Cat\n/m/02,Dog\n/m/03,"Table, dining"\n/m/04,Tree\n')
    rows = ["ImageID,Source,LabelName,Confidence",
            "aaa,verification,/m/01,1", "aaa,verification,/m/02,0", "aaa,crowdsource,/m/99,1",  # /m/99 no class
            "bbb,verification,/m/03,1", "bbb,machine,/m/03,0",  # both: positive wins
            "ccc,verification,/m/04,0",
            "ddd,verification,/m/99,1"]  # only an unknown class: not an image of this dataset
    for split in ("train", "validation"):
        with open(os.path.join(root, f"{split}-annotations-human-imagelabels.csv"), "w") as f:
            f.write("\n".join(rows) + "\n")
        for i in ("aaa", "bbb", "ccc", "ddd"):
            write_jpeg(os.path.join(root, split, f"{i}.jpg"))
    return root


@pytest.mark.parametrize("header", [False, True])
def test_openimages_tiny(tmp_path, header):
    root = make_openimages(tmp_path, header)
    ds = create_dataset("openimages", root=root, img_size=16)
    assert ds.class_names == ["Cat", "Dog", "Table, dining", "Tree"]
    assert len(ds) == 3 and ds.image_ids == ["aaa", "bbb", "ccc"] and ds.ignored_rows == 2
    expected = [[1, 0, -1, -1], [-1, -1, 1, -1], [-1, -1, -1, 0]]
    assert ds.targets.tolist() == expected
    assert [check_item(ds, i, 16)[1].tolist() for i in range(3)] == expected
    neg = create_dataset('openimages(unlabeled="negative")', split="val", root=root)
    assert neg.targets.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="unknown value 'maybe' of unlabeled; valid: unknown, negative"):
        create_dataset('openimages(unlabeled="maybe")', root=root)


def test_openimages_malformed(tmp_path):
    root = make_openimages(tmp_path)
    path = os.path.join(root, "train-annotations-human-imagelabels.csv")
    with open(path, "w") as f:
        f.write("ImageID,Source,LabelName,Confidence\naaa,verification,/m/01,1\naaa,verification,/m/02,yes\n")
    with pytest.raises(ValueError, match=r"malformed Open Images label file .*train-annotations-human-imagelabels"
                                         r".csv, line 3: Confidence 'yes'"):
        create_dataset("openimages", root=root)
    with open(path, "w") as f:
        f.write("ImageID,LabelName\naaa,/m/01\n")
    with pytest.raises(ValueError, match=r"imagelabels.csv: columns \['ImageID', 'LabelName'\], expected"):
        create_dataset("openimages", root=root)
    with open(os.path.join(root, "class-descriptions.csv"), "w") as f:
        f.write("/m/01,Cat,extra\n")
    with pytest.raises(ValueError, match=r"malformed Open Images class file .*class-descriptions.csv, line 1"):
        create_dataset("openimages", root=root)


# ---- ImageFolder ---------------------------------------------------------------------------------------------------
def test_imagefolder_tiny(tmp_path):
    for split, per_class in (("train", 3), ("val", 2)):
        for c, colour in (("n02", (0, 0, 255)), ("n01", (255, 0, 0))):
            for i in range(per_class):
                write_jpeg(str(tmp_path / split / c / f"{c}_{i}.JPEG"), colour=colour)
    (tmp_path / "train" / "n01" / "notes.txt").write_text("not an image")
    write_corrupt_jpeg(str(tmp_path / "val" / "n02" / "n02_bad.JPEG"))
    train = create_dataset("imagefolder", root=str(tmp_path), img_size=8)
    val = create_dataset("imagefolder", split="val", root=str(tmp_path), img_size=8)
    assert train.class_names == ["n01", "n02"] and not train.multilabel
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 1] and len(val) == 5
    x, y = check_item(train, 0, 8)
    assert int(y) == 0 and x[0].mean() > 0.9 and x[2].mean() < 0.1  # red
    with pytest.warns(RuntimeWarning, match="n02_bad.JPEG"):
        items = [val[i] for i in range(len(val))]
    assert len(items) == 5 and len(val.skipped) == 1
    os.makedirs(tmp_path / "val" / "n03")
    with pytest.raises(ValueError, match=r"class folders that .* lacks: n03"):
        create_dataset("imagefolder", split="val", root=str(tmp_path))


def test_scenes_render_cache_returns_the_drawn_image_and_copies(monkeypatch):
    from bench.datasets.scenes import CACHE_ENV, RENDER_CACHE

    RENDER_CACHE.clear()
    ds = create_dataset("scenes(seed=5, train_size=4)", img_size=24)
    first, labels = ds.render(1)
    assert RENDER_CACHE.misses == 1 and RENDER_CACHE.hits == 0
    again, labels2 = create_dataset("scenes(seed=5, train_size=4)", img_size=24).render(1)  # another object
    assert RENDER_CACHE.hits == 1
    fresh, fresh_labels = ds._draw(1)
    assert np.array_equal(first, fresh) and np.array_equal(again, fresh) and np.array_equal(labels2, fresh_labels)
    again[:] = 0.0  # writing into a returned image leaves the cache alone
    assert np.array_equal(ds.render(1)[0], fresh)
    other = create_dataset("scenes(seed=5, train_size=4, distractors=False)", img_size=24).render(1)[0]
    assert not np.array_equal(other, fresh)  # another generation option is another key
    monkeypatch.setenv(CACHE_ENV, "0")
    RENDER_CACHE.clear()
    ds.render(2)
    ds.render(2)
    assert RENDER_CACHE.hits == 0 and not RENDER_CACHE.items
    monkeypatch.setenv(CACHE_ENV, "lots")
    with pytest.raises(ValueError, match="HEADBENCH_SCENES_CACHE_MB must be a number"):
        ds.render(3)
    RENDER_CACHE.clear()
