"""Cost counting: multiply-accumulates (MACs), FLOPs and parameters of a model, its backbone and its head.

Conventions
-----------
* ``macs`` are multiply-accumulates of the matrix products (linear, matmul, bmm, convolution, attention's
  ``q @ k^T`` and ``attn @ v``). This is what timm's ``gmacs``, fvcore's totals and the ML-Decoder paper's
  "FLOPs" are. ``flops = 2 * macs``. Biases, norms, activations, softmax, pooling and elementwise ops are not
  counted; they are *listed* instead (``Cost.uncounted``), never silently counted as zero.
* The primary counter is PyTorch's ``torch.utils.flop_counter.FlopCounterMode``, run under ``torch.no_grad()``
  (not ``inference_mode``: its inference tensors cannot enter autograd later, e.g. backbone features reused to
  train a head) on a model in eval mode. It has no
  formula for the CPU attention kernels (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward)
  nor for ``nn.MultiheadAttention``'s fused fast path (``aten._native_multi_head_attention``): without the
  formulas in ``EXTRA_FLOP_FORMULAS`` attention would count 0 on CPU. The math fallback of
  ``scaled_dot_product_attention`` (dropout in training, some masks) decomposes into ``bmm`` and is counted.
* A ``TorchDispatchMode`` beside the counter records every aten op that runs. Ops with a flop formula are
  counted; ops in ``FREE_OPS`` (views, reshapes, copies, allocation, concatenation, metadata queries) cost no
  arithmetic; every other op is an *uncounted compute op* and is returned as ``{op_name: calls}``.
* fvcore's ``FlopCountAnalysis`` (a TorchScript trace; its totals are MACs) is the cross-check. Its conventions
  differ from ours in what is counted beyond matrix products: it counts ``batch_norm`` (1 or 2 per element in
  eval), ``layer_norm``/``group_norm``/``instance_norm`` (4 or 5 per element), ``adaptive_avg_pool2d`` (1 per
  input element), ``upsample_*`` and ``grid_sampler``, which FlopCounterMode does not, and it ignores or lists as
  unsupported everything else (``mean``, ``add``, activations, ``avg_pool2d``, ``pad``). fvcore 0.1.5 also predates
  ``F.scaled_dot_product_attention``; we give it a handle with the same matmul convention (``FVCORE_SDPA_OPS``),
  computed from the traced op's shapes, so attention heads can be cross-checked. ``Cost.fvcore_by_op`` keeps
  fvcore's per-operator MACs so the matrix-product part can be compared with ours exactly.
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------------------------
# Flop formulas FlopCounterMode lacks (passed as ``custom_mapping``: they receive shapes, and ``out_shape``).
# --------------------------------------------------------------------------------------------------------------

def _sdpa_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Fused attention kernels whose first three arguments are q, k, v (B, h, L, E)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                         **kwargs) -> int:
    """Backward kernels whose first four arguments are grad_out, q, k, v."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _native_mha_flops(query_shape, key_shape, value_shape, embed_dim, num_head, *args, out_shape=None,
                      **kwargs) -> int:
    """``nn.MultiheadAttention``'s fast path (eval, no grad, batch first): q/k/v projections, attention and the
    output projection. Inputs are (B, L, E)."""
    B, Lq, E = query_shape
    Lk = key_shape[1]
    macs = B * Lq * E * E + 2 * B * Lk * E * E  # q, k, v projections
    macs += 2 * B * Lq * Lk * E  # q @ k^T and attn @ v over all heads
    macs += B * Lq * E * E  # out_proj
    return 2 * macs


def _extra_formulas() -> Dict[Any, Callable[..., int]]:
    table = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_forward_flops,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_flops,
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_forward_flops,
        "_scaled_dot_product_fused_attention_overrideable_backward": _sdpa_backward_flops,
        "_scaled_dot_product_attention_math_for_mps": _sdpa_forward_flops,
        "_native_multi_head_attention": _native_mha_flops,
    }
    # Ops missing from an older or newer torch are skipped; the op recorder would list them if they ran.
    return {getattr(aten, name): fn for name, fn in table.items() if hasattr(aten, name)}


EXTRA_FLOP_FORMULAS: Dict[Any, Callable[..., int]] = _extra_formulas()

# Ops that do no arithmetic: views and reshapes, copies and dtype/device moves, allocation and filling,
# concatenation and padding (memory only), and metadata queries. Anything else without a flop formula is
# reported as an uncounted compute op.
FREE_OPS = frozenset({
    # views and shape
    "view", "_unsafe_view", "reshape", "_reshape_alias", "as_strided", "permute", "transpose", "t", "expand",
    "squeeze", "unsqueeze", "flatten", "unflatten", "slice", "select", "narrow", "split", "split_with_sizes",
    "chunk", "unbind", "alias", "view_as",
    # copies, dtype and device
    "clone", "copy_", "_to_copy", "to", "contiguous", "detach", "lift_fresh", "lift_fresh_copy", "resolve_conj",
    "resolve_neg", "_local_scalar_dense", "_has_compatible_shallow_copy_type",
    # allocation and filling
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "new_zeros",
    "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "fill_", "zero_", "scalar_tensor",
    # concatenation and padding: memory traffic only
    "cat", "stack", "constant_pad_nd", "reflection_pad2d", "replication_pad2d",
    # metadata
    "is_contiguous", "size", "sym_size", "stride", "sym_stride", "dim", "numel", "sym_numel", "storage_offset",
    "sym_storage_offset", "is_non_overlapping_and_dense", "is_strides_like_format", "sym_is_contiguous",
    "device", "layout",
})


@dataclass
class Cost:
    """What one forward pass costs.

    ``macs``: multiply-accumulates counted by FlopCounterMode (+ ``EXTRA_FLOP_FORMULAS``).
    ``uncounted``: compute ops that no formula counts, ``{op_name: calls}``.
    ``fvcore_macs``: fvcore's total (MACs, its own conventions; see the module docstring), None when not run.
    ``fvcore_unsupported``: ops fvcore met and could not count, ``{'aten::op': calls}``.
    ``fvcore_by_op``: fvcore's MACs per operator kind (``conv``, ``linear``, ``batch_norm``, ...).
    """

    macs: int
    uncounted: Dict[str, int]
    fvcore_macs: Optional[int] = None
    fvcore_unsupported: Dict[str, int] = field(default_factory=dict)
    fvcore_by_op: Dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs


class _OpRecorder(TorchDispatchMode):
    """Records the name of every aten op that reaches the dispatcher (after FlopCounterMode's decompositions,
    when it is entered below FlopCounterMode)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func._overloadpacket] += 1
        return func(*args, **(kwargs or {}))


def _op_name(packet) -> str:
    return getattr(packet, "__name__", str(packet)).split(".")[-1]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _count(module: nn.Module, args: tuple, kwargs: dict) -> Tuple[int, Dict[str, int], Any]:
    """(MACs, uncounted ops, output) of ``module(*args, **kwargs)`` in eval mode under no_grad."""
    recorder = _OpRecorder()
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    # The recorder is entered first so it sits below the counter and sees the ops that actually run, after the
    # counter's decompositions: exactly the ops the counter's formulas were looked up for.
    with _eval_mode(module), torch.no_grad(), recorder, counter:
        out = module(*args, **kwargs)
    flops = counter.get_total_flops()
    uncounted: Dict[str, int] = {}
    for packet, n in recorder.calls.items():
        name = _op_name(packet)
        if packet in counter.flop_registry or name in FREE_OPS:
            continue
        uncounted[name] = uncounted.get(name, 0) + n
    return flops // 2, uncounted, out


# --------------------------------------------------------------------------------------------------------------
# fvcore cross-check
# --------------------------------------------------------------------------------------------------------------

def _fvcore_sdpa_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev)
    -> ``q @ k^T`` plus ``attn @ v``, the convention of fvcore's own matmul handle."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(i) for i in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


FVCORE_SDPA_OPS = {"aten::scaled_dot_product_attention": _fvcore_sdpa_macs}


class _KwargsAsArgs(nn.Module):
    """A jit-traceable wrapper: tensor keyword arguments become positional inputs of the trace, the others are
    fixed."""

    def __init__(self, module: nn.Module, n_args: int, tensor_keys: List[str], fixed: Dict[str, Any]):
        super().__init__()
        self.module, self.n_args, self.tensor_keys, self.fixed = module, n_args, tensor_keys, fixed

    def forward(self, *inputs):
        kwargs = dict(zip(self.tensor_keys, inputs[self.n_args:]), **self.fixed)
        return self.module(*inputs[: self.n_args], **kwargs)


def _fvcore(module: nn.Module, args: tuple, kwargs: dict) -> Tuple[int, Dict[str, int], Dict[str, int]]:
    """(total MACs, unsupported ops, MACs per operator) from fvcore, its warnings and log lines silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing fvcore warns that torch.jit.script is deprecated
        from fvcore.nn import FlopCountAnalysis

    tensor_keys = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    fixed = {k: v for k, v in kwargs.items() if k not in tensor_keys}
    target: nn.Module = module
    inputs = tuple(args)
    if kwargs:
        target = _KwargsAsArgs(module, len(args), tensor_keys, fixed)
        inputs = inputs + tuple(kwargs[k] for k in tensor_keys)
    analysis = (FlopCountAnalysis(target, inputs).set_op_handle(**FVCORE_SDPA_OPS)
                .unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none"))
    fv_logger = logging.getLogger("fvcore")
    level = fv_logger.level
    fv_logger.setLevel(logging.ERROR)
    try:
        with _eval_mode(module), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about data-dependent Python values
            try:
                total = int(analysis.total())
            except Exception as e:  # the trace failed: say which module and why, keep the cause chained
                raise RuntimeError(f"fvcore could not trace {type(module).__name__}: {type(e).__name__}: {e} "
                                   "(count without the cross-check: fvcore=False)") from e
            by_op = {k: int(v) for k, v in analysis.by_operator().items()}
            unsupported = dict(analysis.unsupported_ops())
    finally:
        fv_logger.setLevel(level)
    return total, unsupported, by_op


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------

def count_macs(module: nn.Module, *args, fvcore: bool = False, **kwargs) -> Cost:
    """The cost of ``module(*args, **kwargs)``: one forward pass in eval mode under no_grad (the module's train/
    eval flags are restored afterwards). With ``fvcore=True`` fvcore's count is added as a cross-check.

    >>> count_macs(nn.Linear(8, 4), torch.randn(2, 8)).macs
    64
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"count_macs takes an nn.Module, got {type(module).__name__}")
    macs, uncounted, _ = _count(module, args, kwargs)
    cost = Cost(macs=macs, uncounted=uncounted)
    if fvcore:
        cost.fvcore_macs, cost.fvcore_unsupported, cost.fvcore_by_op = _fvcore(module, args, kwargs)
    return cost


def param_counts(model: nn.Module) -> Dict[str, int]:
    """Parameters (buffers such as BN running statistics excluded, as timm counts them) of a ``HeadModel``:
    ``params_total``, ``params_trainable`` (requires_grad; ML-Decoder's fixed queries are not),
    ``params_backbone`` and ``params_head``."""
    for part in ("backbone", "head"):
        if not isinstance(getattr(model, part, None), nn.Module):
            raise ValueError(f"param_counts takes a HeadModel with .backbone and .head modules, "
                             f"got {type(model).__name__}")
    params = list(model.parameters())
    return {
        "params_total": sum(p.numel() for p in params),
        "params_trainable": sum(p.numel() for p in params if p.requires_grad),
        "params_backbone": sum(p.numel() for p in model.backbone.parameters()),
        "params_head": sum(p.numel() for p in model.head.parameters()),
    }


def format_ops(ops: Dict[str, int], limit: Optional[int] = None) -> str:
    """``{'add': 12, 'native_batch_norm': 53}`` -> ``"native_batch_norm x53, add x12"`` (most calls first, then by
    name; at most ``limit`` entries, the rest summarised as ``"+N more"``). Empty -> ``""``."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit!r}")
    items = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = items if limit is None else items[:limit]
    text = ", ".join(f"{name} x{n}" for name, n in shown)
    if len(shown) < len(items):
        text += f", +{len(items) - len(shown)} more"
    return text


def _merge(a: Dict[str, int], b: Dict[str, int]) -> Dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def model_cost(model: nn.Module, img_size: int, batch_size: int = 1, head_kwargs: Optional[dict] = None,
               fvcore: bool = True) -> Dict[str, object]:
    """The cost columns of a results row for a ``HeadModel`` on ``batch_size`` images of ``img_size`` pixels.

    The backbone is counted on the images and the head on the backbone's features, so the head's share is split
    out exactly. MACs are per image (divided by the batch: ML-Decoder's fixed-query projection runs once per
    batch, so its per-image cost falls slightly with the batch). Returns ``params_*``, ``gmacs_total``,
    ``gmacs_backbone``, ``gmacs_head``, ``gflops_*`` (= 2 x gmacs), ``gmacs_fvcore_total``, ``gmacs_fvcore_head``
    (None when ``fvcore=False``) and ``uncounted_ops`` (backbone and head together, see ``format_ops``).
    """
    for name, v in (("img_size", img_size), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    row: Dict[str, object] = dict(param_counts(model))
    head_kwargs = dict(head_kwargs or {})
    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    images = torch.randn(batch_size, 3, img_size, img_size, device=device, dtype=dtype)

    bb_macs, bb_uncounted, features = _count(model.backbone, (images,), {})
    head_macs, head_uncounted, _ = _count(model.head, (features,), head_kwargs)
    per_image = 1e9 * batch_size
    row.update(
        gmacs_total=(bb_macs + head_macs) / per_image,
        gmacs_backbone=bb_macs / per_image,
        gmacs_head=head_macs / per_image,
    )
    row.update(gflops_total=2 * row["gmacs_total"], gflops_backbone=2 * row["gmacs_backbone"],
               gflops_head=2 * row["gmacs_head"])
    row["gmacs_fvcore_total"] = row["gmacs_fvcore_head"] = None
    if fvcore:
        fv_bb, _, _ = _fvcore(model.backbone, (images,), {})
        fv_head, _, _ = _fvcore(model.head, (features,), head_kwargs)
        row["gmacs_fvcore_total"] = (fv_bb + fv_head) / per_image
        row["gmacs_fvcore_head"] = fv_head / per_image
    row["uncounted_ops"] = format_ops(_merge(bb_uncounted, head_uncounted))
    return row


_COST_CACHE: Dict[tuple, dict] = {}


def model_cost_cached(model, img_size: int, head_kwargs: Optional[dict] = None) -> dict:
    """``flops.model_cost`` at batch 1, once per (backbone, head, resolution, classes) in a process: MACs and
    params do not depend on the weights (seed) nor on the batch size being timed, and counting a large backbone
    takes seconds (three forward passes with fvcore's)."""
    key = (model.backbone_name, model.head.spec, img_size, model.head.num_classes)
    if key not in _COST_CACHE:
        _COST_CACHE[key] = model_cost(model, img_size, 1, head_kwargs)
    return dict(_COST_CACHE[key])


__all__ = ["Cost", "EXTRA_FLOP_FORMULAS", "FREE_OPS", "FVCORE_SDPA_OPS", "count_macs", "format_ops",
           "model_cost", "model_cost_cached", "param_counts"]
