"""Training losses: the asymmetric loss (ASL, Ridnik et al. 2021, the ML-Decoder recipe), BCE and CE.

Every loss takes logits (B, N) and targets as the datasets give them: a multi-hot float (B, N) where -1 marks an
unknown label (Open Images' unannotated classes) that contributes nothing, or a long class index (B,) for
single-label data (one-hot encoded for the multi-label losses). Losses are computed in float32 whatever the
autocast dtype of the logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("asl", "bce", "ce")
REDUCTIONS = ("sum", "mean")


def _multi_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targets as a float (B, N) matrix: class indices are one-hot encoded, multi-hot passes through."""
    if targets.dim() == 1:
        return F.one_hot(targets.long(), logits.shape[1]).float()
    if targets.shape != logits.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}")
    return targets.float()


def _reduce(loss: torch.Tensor, known: torch.Tensor, reduction: str) -> torch.Tensor:
    total = (loss * known).sum()
    if reduction == "terms":  # (sum over the known entries, their number): what data-parallel training reduces
        return torch.stack([total, known.sum()])
    return total if reduction == "sum" else total / known.sum().clamp(min=1)


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 4.0, gamma_pos: float = 0.0,
                    clip: float = 0.05, eps: float = 1e-8, reduction: str = "sum") -> torch.Tensor:
    """ASL: ``-y (1-p)^gamma_pos log(p) - (1-y) p_m^gamma_neg log(1-p_m)`` with ``p_m = max(p - clip, 0)``.

    As the official implementation: probabilities are clamped at ``eps`` before the log, and the focusing weights
    are treated as constants (no gradient through them, its ``disable_torch_grad_focal_loss=True``). With both
    gammas and clip at 0 it is the binary cross-entropy. Entries whose target is -1 are ignored; ``reduction`` is
    "sum" (the paper's) or "mean" over the known entries.
    """
    y = _multi_hot(logits, targets)
    known = (y >= 0).float()
    y = y.clamp(min=0)
    p = torch.sigmoid(logits.float())
    p_neg = 1 - p
    if clip > 0:
        p_neg = (p_neg + clip).clamp(max=1)  # 1 - p_m
    loss = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(p_neg.clamp(min=eps))
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.no_grad():
            pt = p * y + p_neg * (1 - y)
            weight = torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
        loss = loss * weight
    return _reduce(-loss, known, reduction)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Binary cross-entropy with logits; entries whose target is -1 are ignored."""
    y = _multi_hot(logits, targets)
    known = (y >= 0).float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), y.clamp(min=0), reduction="none")
    return _reduce(loss, known, reduction)


def ce_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Softmax cross-entropy for single-label targets (B,) of class indices; index -1 is ignored."""
    if targets.dim() != 1:
        raise ValueError("loss 'ce' is for single-label data (targets of class indices, shape (B,)), got targets "
                         f"of shape {tuple(targets.shape)}; use 'asl' or 'bce' for multi-label data")
    t = targets.long()
    loss = F.cross_entropy(logits.float(), t.clamp(min=0), reduction="none")
    return _reduce(loss, (t >= 0).float(), reduction)


def compute_loss(name: str, logits: torch.Tensor, targets: torch.Tensor, *, reduction: str = "sum",
                 gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    """The loss called ``name`` ("asl", "bce" or "ce"); the ASL options apply to "asl" only.

    Besides "sum" and "mean", ``reduction="terms"`` returns the pair ``[sum, number of known entries]`` (a
    2-vector, only the sum carries a gradient): data-parallel training adds both over the ranks, so that "mean"
    divides by the known entries of the whole global batch, not of each rank's share.
    """
    if reduction not in REDUCTIONS + ("terms",):
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    if name == "asl":
        return asymmetric_loss(logits, targets, gamma_neg, gamma_pos, clip, eps, reduction)
    if name == "bce":
        return bce_loss(logits, targets, reduction)
    if name == "ce":
        return ce_loss(logits, targets, reduction)
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
