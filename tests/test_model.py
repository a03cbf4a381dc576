"""build_model: timm backbones + heads as separate modules, and loading official whole-model checkpoints.

The official checkpoints are built here, in tmp dirs, from random models: a ResNet one with the ML-Decoder head
under ``fc.``, and a TResNet one in the old official key format (inplace-ABN names) with the head under ``head.``.
Small inputs (64 px) keep the file fast.
"""
from __future__ import annotations

import re

import pytest
import torch

from bench.backbones.model import HeadModel, assemble, build_model, create_backbone, load_checkpoint_file

IMG = 64


def _images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


def _randomise_norms(model: torch.nn.Module, seed: int) -> None:
    """Random BatchNorm affine weights and running stats (positive scales), so that loading them matters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# Official ML-Decoder head keys from this project's (the inverse of convert_official_state_dict).
_TO_OFFICIAL = [
    (r"^input_proj\.", "decoder.embed_standart."),
    (r"^queries$", "decoder.query_embed.weight"),
    (r"^pool_weight$", "decoder.duplicate_pooling"),
    (r"^pool_bias$", "decoder.duplicate_pooling_bias"),
    (r"^decoder\.layers\.(\d+)\.cross_attn\.", r"decoder.layers.\1.multihead_attn."),
    (r"^word_proj\.", "wordvec_proj."),
]


def official_head_state_dict(head: torch.nn.Module) -> dict:
    out = {}
    for k, v in head.state_dict().items():
        for pattern, repl in _TO_OFFICIAL:
            k = re.sub(pattern, repl, k)
        out[k] = v.clone()
    return out


# The old official TResNet names (inplace-ABN): timm's tresnet checkpoint_filter_fn, inverted.
_TRESNET_TO_OLD = [
    (r"conv(\d+)\.conv\.", r"conv\1.0."),
    (r"conv(\d+)\.bn\.", r"conv\1.1."),
    (r"downsample\.(\d+)\.conv\.", r"downsample.\1.0."),
    (r"downsample\.(\d+)\.bn\.", r"downsample.\1.1."),
]


def old_tresnet_state_dict(backbone: torch.nn.Module) -> dict:
    out = {}
    for k, v in backbone.state_dict().items():
        if k.endswith("num_batches_tracked"):  # inplace-ABN kept no such counter
            continue
        v = v.clone()
        if k.endswith("bn.weight"):  # timm's filter maps w -> |w| + 1e-5 (inplace-ABN -> BatchNorm)
            v = v - 1e-5
        for pattern, repl in _TRESNET_TO_OLD:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------------ building ---

@pytest.mark.parametrize("backbone, kwargs, feature_shape, head_spec", [
    ("resnet18", {}, (2, 512, 2, 2), "gap"),
    ("resnet18", {}, (2, 512, 2, 2), "mldecoder(embed=64, ffn=128)"),
    ("tresnet_m", {}, (2, 2048, 2, 2), "mldecoder(embed=64, ffn=128)"),
    ("efficientnet_b0", {}, (2, 1280, 2, 2), "gap"),
    ("vit_tiny_patch16_224", {"img_size": IMG}, (2, 17, 192), "mldecoder(embed=64, ffn=128)"),  # 16 patches + cls
    ("vit_tiny_patch16_224", {"img_size": IMG}, (2, 17, 192), "gap"),
])
def test_build_model(backbone, kwargs, feature_shape, head_spec):
    torch.manual_seed(0)
    model = build_model(backbone, head_spec, 7, **kwargs).eval()
    assert isinstance(model, HeadModel)
    assert model.backbone_name == backbone
    assert model.head.spec == head_spec
    assert model.head.in_features == feature_shape[-1 if len(feature_shape) == 3 else 1]
    assert not any(p is q for p in model.backbone.parameters() for q in model.head.parameters())
    x = _images()
    with torch.no_grad():
        features = model.backbone(x)
        assert features.shape == feature_shape
        out = model(x)
        assert out.shape == (2, 7) and torch.isfinite(out).all()
        # The runner may compute features once and feed any head.
        torch.testing.assert_close(model.head(features), out)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_assemble_puts_heads_on_one_backbone_each_as_build_model_makes_it(tmp_path):
    """``assemble`` is where every model is put together: ``build_model``'s, and several heads on one shared
    backbone (cost cells, probe cells), each the same as ``build_model`` makes it from the same random state."""
    spec = "mldecoder(embed=64, ffn=128)"
    torch.manual_seed(3)
    alone = build_model("resnet18", spec, 7)
    torch.manual_seed(3)
    backbone = create_backbone("resnet18")
    state = torch.get_rng_state()
    gap = assemble(backbone, "gap", 7, backbone_name="resnet18")
    torch.set_rng_state(state)  # as the probe cells do before each head
    shared = assemble(backbone, spec, 7, backbone_name="resnet18")
    assert gap.backbone is shared.backbone is backbone and shared.backbone_name == "resnet18"
    assert shared.head.spec == spec and _same_state(shared, alone)

    path = tmp_path / "own.pth"
    torch.save(alone.state_dict(), path)
    torch.manual_seed(4)
    fresh = assemble(create_backbone("resnet18"), spec, 7)
    torch.manual_seed(4)
    loaded = assemble(create_backbone("resnet18"), spec, 7, checkpoint=str(path))
    assert not _same_state(fresh, alone) and _same_state(loaded, alone)


def test_head_keyword_arguments_pass_through():
    model = build_model("resnet18", 'mldecoder(queries="word", embed=64, ffn=128)', 5).eval()
    with torch.no_grad():
        assert model(_images(1), class_embeddings=torch.randn(9, 300)).shape == (1, 9)


def test_unknown_backbone_names_close_matches():
    with pytest.raises(ValueError) as e:
        build_model("resnt18", "gap", 10)
    assert "'resnt18'" in str(e.value) and "'resnet18'" in str(e.value)
    with pytest.raises(ValueError, match="unknown backbone 'zzzqqq'"):
        create_backbone("zzzqqq")


def test_unknown_head_fails_before_anything_is_loaded():
    with pytest.raises(ValueError, match="did you mean 'mldecoder'"):
        build_model("resnet18", "mldecodr", 10)


# ------------------------------------------------------------------------------------------ checkpoints ---

def _assert_same_outputs(source: HeadModel, loaded: HeadModel, x: torch.Tensor, atol: float = 1e-5) -> None:
    with torch.no_grad():
        ref, out = source.eval()(x), loaded.eval()(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=atol)


def _assert_differs(a: HeadModel, b: HeadModel, x: torch.Tensor) -> None:
    """Before loading, the fresh model must differ from the source, or the load test checks nothing."""
    with torch.no_grad():
        assert not torch.allclose(a.eval()(x), b.eval()(x), atol=1e-3)


def test_official_resnet_checkpoint_with_head_under_fc(tmp_path):
    spec, n = "mldecoder(embed=64, ffn=128)", 20
    torch.manual_seed(1)
    source = build_model("resnet18", spec, n)
    _randomise_norms(source, seed=1)
    sd = {**source.backbone.state_dict(),
          **{"fc." + k: v for k, v in official_head_state_dict(source.head).items()}}
    path = tmp_path / "resnet18_mldecoder.pth"
    torch.save({"model": sd, "epoch": 3}, path)

    torch.manual_seed(2)
    _assert_differs(build_model("resnet18", spec, n), source, _images())
    torch.manual_seed(2)
    loaded = build_model("resnet18", spec, n, checkpoint=str(path))
    _assert_same_outputs(source, loaded, _images())
    assert torch.equal(loaded.head.queries, source.head.queries)


def test_official_checkpoint_under_module_prefix(tmp_path):
    spec, n = "mldecoder(embed=64, ffn=128, groups=4)", 10
    torch.manual_seed(3)
    source = build_model("resnet18", spec, n)
    _randomise_norms(source, seed=3)
    sd = {"module." + k: v for k, v in source.backbone.state_dict().items()}
    sd.update({"module.fc." + k: v for k, v in official_head_state_dict(source.head).items()})
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": sd}, path)
    _assert_same_outputs(source, build_model("resnet18", spec, n, checkpoint=str(path)), _images())


def test_official_tresnet_checkpoint_in_old_key_format(tmp_path):
    spec, n = "mldecoder(embed=64, ffn=128)", 12
    torch.manual_seed(4)
    source = build_model("tresnet_m", spec, n)
    _randomise_norms(source, seed=4)
    old = old_tresnet_state_dict(source.backbone)
    assert "body.conv1.0.weight" in old and "body.layer1.0.conv1.1.weight" in old
    assert any(re.search(r"downsample\.\d+\.0\.weight$", k) for k in old)
    assert not any(".conv." in k or ".bn." in k for k in old)
    sd = {**old, **{"head." + k: v for k, v in official_head_state_dict(source.head).items()}}
    path = tmp_path / "tresnet_m_mldecoder.pth"
    torch.save({"model": sd}, path)

    torch.manual_seed(5)
    _assert_differs(build_model("tresnet_m", spec, n), source, _images())
    torch.manual_seed(5)
    loaded = build_model("tresnet_m", spec, n, checkpoint=str(path))
    _assert_same_outputs(source, loaded, _images(), atol=1e-4)  # bn weights pass through (w - 1e-5) + 1e-5


def test_own_checkpoint_round_trip(tmp_path):
    spec, n = "gap", 5
    torch.manual_seed(6)
    source = build_model("resnet18", spec, n)
    _randomise_norms(source, seed=6)
    path = tmp_path / "own.pth"
    torch.save(source.state_dict(), path)
    loaded = build_model("resnet18", spec, n, checkpoint=str(path))
    _assert_same_outputs(source, loaded, _images())


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        build_model("resnet18", "gap", 5, checkpoint=str(tmp_path / "nope.pth"))


def test_checkpoint_with_unrelated_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(3), "decoder.bias": torch.zeros(3)}}, path)
    with pytest.raises(ValueError, match="0 of its 2 keys match") as err:
        build_model("resnet18", "mldecoder(embed=64, ffn=128)", 5, checkpoint=str(path))
    assert "decoder.bias" in str(err.value) and "backbone.bn1.bias" in str(err.value)  # a few of each side


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint") as err:
        load_checkpoint_file(str(path))
    assert "garbage.pth" in str(err.value) and "expected a file written by torch.save" in str(err.value)
    assert len(str(err.value)) < 700 and "\n" not in str(err.value)  # one line, not torch.load's pages
    torch.save({"model": [1, 2, 3]}, path)
    with pytest.raises(ValueError, match="not a state dict of tensors"):
        load_checkpoint_file(str(path))


def test_checkpoint_of_this_project_with_no_matching_key(tmp_path):
    path = tmp_path / "renamed.pth"
    sd = {"backbone." + k.replace("layer", "stage"): v for k, v in build_model("resnet18", "gap", 5).backbone.state_dict().items()}
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"keys match the model's") as err:
        build_model("resnet18", "gap", 5, checkpoint=str(path))
    assert "backbone.stage1" in str(err.value) and "backbone.layer1" in str(err.value)


def test_checkpoint_for_another_backbone(tmp_path):
    """Official head keys but a backbone that is not the one asked for: a ValueError naming the mismatch."""
    source = build_model("resnet18", "mldecoder(embed=64, ffn=128)", 5)
    sd = {"layerX.weight": torch.zeros(2),
          **{"fc." + k: v for k, v in official_head_state_dict(source.head).items()}}
    path = tmp_path / "wrong_backbone.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match="does not fit the backbone 'resnet18'"):
        build_model("resnet18", "mldecoder(embed=64, ffn=128)", 5, checkpoint=str(path))
