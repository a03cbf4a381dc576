"""The k-nearest-neighbour baseline of frozen-feature evaluation (DINO, Caron et al. 2021, section 4.1):
no training, every evaluation image scored by a vote of its ``k`` nearest training images.

Each feature map is pooled to one vector (the mean over positions, what the linear probe sees), L2-normalised;
the neighbours are the ``k`` training images of highest cosine similarity, each voting with weight
``exp(similarity / temperature)`` for its labels. A class's score is its share of the weighted vote: the top-1
class for single-label data, the ranking of each class for multi-label mAP. DINO's settings: k = 20,
temperature 0.07. Nothing is fitted: on pretrained (or given) weights the seed changes nothing; on a backbone
started from random weights the seed sets those weights, hence the features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

K = 20
TEMPERATURE = 0.07
CHUNK = 1024  # evaluation images per similarity block: (CHUNK, S) floats at a time


def knn_label(k: int) -> str:
    """The ``head`` column of the baseline's rows."""
    return f"knn(k={int(k)})"


def pooled(features: torch.Tensor) -> torch.Tensor:
    """(S, C, H, W) maps or (S, L, C) tokens -> (S, C) unit vectors: the mean over positions, L2-normalised."""
    f = features.float()
    v = f.mean(dim=(2, 3)) if f.dim() == 4 else f.mean(dim=1) if f.dim() == 3 else f
    return F.normalize(v, dim=1)


def one_hot(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices (S,) or multi-hot (S, N) -> (S, N) float."""
    if targets.dim() == 1:
        return F.one_hot(targets.long(), num_classes).float()
    return targets.float()


def knn_scores(train_features: torch.Tensor, train_targets: torch.Tensor, features: torch.Tensor, num_classes: int,
               k: int = K, temperature: float = TEMPERATURE) -> torch.Tensor:
    """(S_eval, N) vote shares in [0, 1] (each row sums to the mean number of labels of its neighbours' votes)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"knn: k must be a whole number >= 1, got {k!r}")
    if not temperature > 0:
        raise ValueError(f"knn: temperature must be > 0, got {temperature!r}")
    bank = pooled(train_features)
    labels = one_hot(train_targets, num_classes)
    k = min(k, len(bank))
    out = []
    for start in range(0, len(features), CHUNK):
        q = pooled(features[start:start + CHUNK])
        sim, idx = (q @ bank.T).topk(k, dim=1)  # (B, k)
        w = torch.softmax(sim / temperature, dim=1)  # exp(sim / T), normalised: shares of the vote
        out.append(torch.einsum("bk,bkn->bn", w, labels[idx]))
    return torch.cat(out)


def knn_logits(scores: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Vote shares as logits: multi-label metrics apply a sigmoid (so the inverse, clamped away from 0 and 1;
    ranks are kept), single-label ones an argmax/softmax (so the log)."""
    eps = 1e-6
    s = scores.clamp(eps, 1 - eps)
    return torch.log(s / (1 - s)) if multilabel else torch.log(s)


def knn_macs(bank_size: int, channels: int) -> int:
    """Multiply-accumulates per evaluation image: the mean over positions is free (additions), the similarity to
    every training vector is ``bank_size * channels``."""
    return int(bank_size) * int(channels)
