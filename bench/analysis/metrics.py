"""Accuracy metrics for classification heads: mAP, thresholded multi-label scores, F1@K, top-k accuracy.

Conventions, shared by every function here:
- ``scores`` is a numpy array (S, N): S samples, N classes. For mAP and F1@K any monotonic score works (logits
  or probabilities give the same result); thresholded metrics take probabilities (``sigmoid(logits)``).
- ``targets`` is (S, N) holding 1 (positive), 0 (negative) or -1 (unknown). An unknown pair (Open Images'
  unverified labels, VOC's ``difficult`` objects) is ignored for that class, as if the sample were absent.
- Every metric is returned in percent.
- A class with no known positive has no AP (nor recall). What it contributes to averages is an explicit policy,
  ``no_positive``: ``"skip"`` (excluded from the mean; the default) or ``"zero"`` (contributes 0, as the
  ML-Decoder paper's code does). ``average_precision_per_class`` gives NaN for such classes so a caller can count
  and report them; ``multilabel_metrics`` reports the policy and the count.

Only numpy is imported; everything is vectorised over samples (chunked over classes to bound memory).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

NO_POSITIVE_POLICIES = ("skip", "zero")
# Upper bound on the elements of one (S, n) working array; the per-class work is done in chunks of classes.
_CHUNK_ELEMENTS = 1 << 21


# ---------------------------------------------------------------------------------------------------- checks

def _check_policy(no_positive: str) -> None:
    if no_positive not in NO_POSITIVE_POLICIES:
        raise ValueError(f"no_positive={no_positive!r}; valid policies are {list(NO_POSITIVE_POLICIES)}")


def _check_scores(scores, name: str = "scores") -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples, classes); got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric; got dtype {scores.dtype}")
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        bad = int(np.isnan(scores).any(axis=1).sum())
        raise ValueError(f"{name} contain NaN in {bad} of {scores.shape[0]} samples")
    return scores


def _check_inputs(scores, targets) -> Tuple[np.ndarray, np.ndarray]:
    scores = _check_scores(scores)
    targets = np.asarray(targets)
    if targets.shape != scores.shape:
        raise ValueError(f"targets have shape {targets.shape} but scores have {scores.shape}; "
                         "both must be (samples, classes)")
    bad = ~np.isin(targets, (-1, 0, 1))
    if bad.any():
        raise ValueError(f"targets must hold 1 (positive), 0 (negative) or -1 (unknown); "
                         f"found {np.unique(targets[bad])[:5].tolist()}")
    return scores, targets.astype(np.int8)


def _check_probabilities(probs) -> np.ndarray:
    probs = _check_scores(probs, "probabilities")
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(f"thresholded metrics take probabilities in [0, 1]; got values in "
                         f"[{probs.min():.4g}, {probs.max():.4g}] "
                         "(logits? pass bench.analysis.metrics.sigmoid(logits))")
    return probs


def _class_chunks(num_samples: int, num_classes: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, num_samples))
    for start in range(0, num_classes, step):
        yield slice(start, min(start + step, num_classes))


def sigmoid(logits) -> np.ndarray:
    """Logistic function, overflow-free for any float input (0.5 * (1 + tanh(x / 2)))."""
    x = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# ------------------------------------------------------------------------------------------------------- mAP

def _average_precision_chunk(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AP (fraction) of each column of (S, n) scores/targets; NaN where a column has no known positive."""
    num_samples = scores.shape[0]
    order = np.argsort(scores, axis=0, kind="stable")[::-1]          # (S, n) indices, scores descending
    s = np.take_along_axis(scores, order, axis=0)                     # (S, n) sorted scores
    t = np.take_along_axis(targets, order, axis=0)                    # (S, n) targets in that order
    pos = t == 1
    tp = np.cumsum(pos, axis=0)                                       # (S, n) positives ranked so far
    seen = np.cumsum(t >= 0, axis=0)                                  # (S, n) known samples ranked so far
    # Tied scores form one group (one threshold, as scikit-learn's precision_recall_curve): every member of a
    # group gets the precision at the group's last member. Unknowns count in neither tp nor seen, so they
    # change no precision (the same as dropping them), whatever group they fall in.
    is_end = np.ones(s.shape, dtype=bool)
    is_end[:-1] = s[:-1] != s[1:]
    end_index = np.where(is_end, np.arange(num_samples)[:, None], num_samples - 1)
    group_end = np.minimum.accumulate(end_index[::-1], axis=0)[::-1]  # (S, n) index of the group's last row
    precision = (np.take_along_axis(tp, group_end, axis=0)
                 / np.maximum(np.take_along_axis(seen, group_end, axis=0), 1))
    num_pos = pos.sum(axis=0)
    ap = np.full(s.shape[1], np.nan)
    has_pos = num_pos > 0
    ap[has_pos] = (precision * pos).sum(axis=0)[has_pos] / num_pos[has_pos]
    return ap


def average_precision_per_class(scores, targets) -> np.ndarray:
    """Non-interpolated average precision of each class, in percent; (N,) with NaN for classes with no positive.

    Per class, samples are ranked by score (descending) and AP is the mean, over the positives, of the precision
    at the positive's rank: ``AP = (1/P) sum_{positive i} (positives ranked <= i) / i``. Tied scores are one
    group sharing the precision at the group's end, exactly as ``sklearn.metrics.average_precision_score``, so
    the result does not depend on sample order; without ties this is the ML-Decoder paper's formula. Samples
    whose target is -1 are ignored for that class.
    """
    scores, targets = _check_inputs(scores, targets)
    num_samples, num_classes = scores.shape
    ap = np.full(num_classes, np.nan)
    if num_samples == 0:
        return ap
    for cols in _class_chunks(num_samples, num_classes):
        ap[cols] = _average_precision_chunk(scores[:, cols], targets[:, cols])
    return 100.0 * ap


def reduce_average_precision(ap, no_positive: str = "skip") -> float:
    """Mean of per-class APs (NaN = class without positives) under the ``no_positive`` policy.

    ``"skip"`` averages over the classes with positives (NaN when there are none); ``"zero"`` counts each class
    without positives as 0 and averages over all classes.
    """
    _check_policy(no_positive)
    ap = np.asarray(ap, dtype=np.float64)
    if no_positive == "zero":
        ap = np.nan_to_num(ap, nan=0.0)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if ap.size else float("nan")


def mean_average_precision(scores, targets, no_positive: str = "skip") -> float:
    """mAP in percent: ``average_precision_per_class`` averaged over classes.

    ``no_positive``: ``"skip"`` (default) leaves classes without a known positive out of the mean (NaN if no
    class has one); ``"zero"`` counts them as 0 (the paper's code). Count them with
    ``np.isnan(average_precision_per_class(...)).sum()``, or use ``multilabel_metrics``, which reports it.
    """
    _check_policy(no_positive)
    return reduce_average_precision(average_precision_per_class(scores, targets), no_positive)


# ------------------------------------------------------------------------------------- thresholded metrics

def _f1(precision: float, recall: float) -> float:
    if np.isnan(precision) or np.isnan(recall):
        return float("nan")
    return float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0


def thresholded_metrics(probs, targets, threshold: float = 0.5, no_positive: str = "skip") -> Dict[str, float]:
    """CP, CR, CF1 (per class) and OP, OR, OF1 (overall) in percent, predicting positive where probs >= threshold.

    Takes probabilities (``sigmoid(logits)``); values outside [0, 1] raise ValueError. As in the multi-label
    literature (ML-GCN, ASL): CP and CR are per-class precision and recall averaged over classes, CF1 is the F1
    of those two averages; OP, OR are precision and recall over all (sample, class) pairs and OF1 their F1.
    A class never predicted has precision 0 (scikit-learn's ``zero_division=0``). Classes without a known
    positive have no recall: ``"skip"`` leaves them out of both CP and CR, ``"zero"`` counts 0 for both (then
    CP/CR equal scikit-learn's macro precision/recall with ``zero_division=0``). The overall metrics count every
    pair whatever the policy. Pairs with target -1 are ignored.
    """
    _check_policy(no_positive)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold} is not a probability in [0, 1]")
    probs = _check_probabilities(probs)
    probs, targets = _check_inputs(probs, targets)
    known = targets >= 0
    pred = (probs >= threshold) & known                               # (S, N) predicted positives
    pos = targets == 1                                                # (S, N) known positives
    tp = (pred & pos).sum(axis=0).astype(np.float64)                  # (N,)
    num_pred = pred.sum(axis=0)                                       # (N,)
    num_pos = pos.sum(axis=0)                                         # (N,)

    prec_c = np.divide(tp, num_pred, out=np.zeros_like(tp), where=num_pred > 0)
    rec_c = np.divide(tp, num_pos, out=np.zeros_like(tp), where=num_pos > 0)
    classes = num_pos > 0 if no_positive == "skip" else np.ones_like(num_pos, dtype=bool)
    cp = 100.0 * prec_c[classes].mean() if classes.any() else float("nan")
    cr = 100.0 * rec_c[classes].mean() if classes.any() else float("nan")

    op = 100.0 * tp.sum() / num_pred.sum() if num_pred.sum() > 0 else 0.0
    orr = 100.0 * tp.sum() / num_pos.sum() if num_pos.sum() > 0 else float("nan")
    return {"cp": float(cp), "cr": float(cr), "cf1": _f1(cp, cr),
            "op": float(op), "or": float(orr), "of1": _f1(op, orr)}


def precision_recall_at_k(scores, targets, k: int) -> Tuple[float, float, float]:
    """Precision, recall and F1 at top-K in percent (the NUS-WIDE zero-shot literature's F1@K).

    Each sample predicts its K highest-scoring classes; precision = correct predictions / predictions and recall
    = correct predictions / positives, both summed over all samples, F1 their harmonic mean. A predicted class
    whose target is -1 counts as neither right nor wrong. Ties at the K-th score are broken by numpy's
    partition order (deterministic, not by class meaning). Which samples and classes to include (for ZSL: the
    unseen columns) is the caller's choice: pass the sliced arrays.
    """
    scores, targets = _check_inputs(scores, targets)
    num_samples, num_classes = scores.shape
    if not 1 <= k <= num_classes:
        raise ValueError(f"k={k} must be between 1 and the number of classes ({num_classes})")
    correct = predicted = 0
    step = max(1, _CHUNK_ELEMENTS // max(1, num_classes))
    for start in range(0, num_samples, step):
        s = scores[start:start + step].astype(np.float64)
        t = targets[start:start + step]
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]              # (b, K) top-K class indices, unordered
        hit = np.take_along_axis(t, top, axis=1)                      # (b, K) their targets
        correct += int((hit == 1).sum())
        predicted += int((hit >= 0).sum())
    num_pos = int((targets == 1).sum())
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / num_pos if num_pos else float("nan")
    return precision, recall, _f1(precision, recall)


def f1_at_k(scores, targets, k: int) -> float:
    """F1 at top-K in percent; see ``precision_recall_at_k``."""
    return precision_recall_at_k(scores, targets, k)[2]


# --------------------------------------------------------------------------------------------- aggregates

def _unseen_mask(unseen, num_classes: int) -> np.ndarray:
    unseen = np.asarray(unseen)
    if unseen.dtype == bool:
        if unseen.shape != (num_classes,):
            raise ValueError(f"an unseen mask must have one entry per class ({num_classes}); got {unseen.shape}")
        return unseen
    if unseen.ndim != 1 or (unseen.size and not np.issubdtype(unseen.dtype, np.integer)):
        raise ValueError("unseen must be a boolean mask over classes or a 1-D array of class indices")
    if unseen.size and (unseen.min() < 0 or unseen.max() >= num_classes):
        raise ValueError(f"unseen class indices must be in [0, {num_classes}); got "
                         f"[{unseen.min()}, {unseen.max()}]")
    mask = np.zeros(num_classes, dtype=bool)
    mask[unseen.astype(np.int64)] = True
    return mask


def multilabel_metrics(probs, targets, threshold: float = 0.5, unseen: Optional[Sequence] = None,
                       no_positive: str = "skip", ks: Sequence[int] = (3, 5)) -> Dict[str, object]:
    """Every multi-label metric of one evaluation, keyed like the results columns; values in percent.

    ``probs``: (S, N) probabilities (``sigmoid(logits)``); mAP and F1@K would be the same on logits, the
    thresholded metrics need probabilities. ``unseen``: boolean mask or indices of the zero-shot classes; when
    given, adds ``zsl_map`` (mAP over the unseen classes only) and ``gzsl_map`` (over all classes). AP is per
    class, so restricting the score columns does not change it; ``gzsl_map`` equals ``map``.

    Keys: ``map, cp, cr, cf1, op, or, of1, f1_at_<k>`` for k in ``ks`` (NaN when k exceeds the number of
    classes), ``zsl_map, gzsl_map`` when ``unseen`` is given, ``map_no_positive_policy`` (the policy) and
    ``map_no_positive_classes`` (how many classes had no known positive).
    """
    _check_policy(no_positive)
    probs = _check_probabilities(probs)
    ap = average_precision_per_class(probs, targets)
    out: Dict[str, object] = {"map": reduce_average_precision(ap, no_positive)}
    out.update(thresholded_metrics(probs, targets, threshold, no_positive))
    for k in ks:
        out[f"f1_at_{k}"] = f1_at_k(probs, targets, k) if k <= probs.shape[1] else float("nan")
    if unseen is not None:
        mask = _unseen_mask(unseen, probs.shape[1])
        out["zsl_map"] = reduce_average_precision(ap[mask], no_positive)
        out["gzsl_map"] = reduce_average_precision(ap, no_positive)
    out["map_no_positive_policy"] = no_positive
    out["map_no_positive_classes"] = int(np.isnan(ap).sum())
    return out


def top_k_accuracy(logits, labels, k: int = 1) -> float:
    """Single-label top-K accuracy in percent; ``logits`` (S, N), ``labels`` (S,) class indices.

    A sample is right when fewer than K other classes score at least as high as its label: ties count against
    the model, so a constant output (a dead head) scores 0 rather than 100.
    """
    logits = _check_scores(logits, "logits")
    labels = np.asarray(labels)
    num_samples, num_classes = logits.shape
    if labels.shape != (num_samples,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be ({num_samples},) integer class indices; got {labels.dtype} "
                         f"{labels.shape}")
    if num_samples and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}); got [{labels.min()}, {labels.max()}]")
    if not 1 <= k <= num_classes:
        raise ValueError(f"k={k} must be between 1 and the number of classes ({num_classes})")
    if num_samples == 0:
        return float("nan")
    true_score = np.take_along_axis(logits, labels[:, None], axis=1)  # (S, 1)
    rank = (logits >= true_score).sum(axis=1) - 1                     # (S,) other classes at least as high
    return float(100.0 * (rank < k).mean())


def singlelabel_metrics(logits, labels) -> Dict[str, float]:
    """``{"top1", "top5"}`` in percent (top5 is NaN with fewer than 5 classes); see ``top_k_accuracy``."""
    logits = _check_scores(logits, "logits")
    return {"top1": top_k_accuracy(logits, labels, 1),
            "top5": top_k_accuracy(logits, labels, 5) if logits.shape[1] >= 5 else float("nan")}
