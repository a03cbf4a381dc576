"""bench.analysis.metrics: mAP against scikit-learn (with and without ties) and by hand; thresholded, F1@K, top-k by hand."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score, recall_score

from bench.analysis import metrics
from bench.analysis.metrics import (
    average_precision_per_class, f1_at_k, mean_average_precision, multilabel_metrics, precision_recall_at_k,
    sigmoid, singlelabel_metrics, thresholded_metrics, top_k_accuracy,
)


def _random(seed, samples=300, classes=12, decimals=None, rate=0.2):
    rng = np.random.default_rng(seed)
    scores = rng.random((samples, classes))
    if decimals is not None:
        scores = scores.round(decimals)  # many tied scores per class
    targets = (rng.random((samples, classes)) < rate).astype(np.int64)
    targets[0] = 1  # every class has a positive
    return scores, targets


def _sklearn_ap(scores, targets):
    return np.array([100 * average_precision_score(targets[:, c], scores[:, c]) for c in range(scores.shape[1])])


# ----------------------------------------------------------------------------------------------------- mAP

@pytest.mark.parametrize("decimals", [None, 1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_ap_matches_sklearn(seed, decimals):
    scores, targets = _random(seed, decimals=decimals)
    if decimals is not None:
        assert len(np.unique(scores[:, 0])) < scores.shape[0] // 2  # the ties are really there
    expected = _sklearn_ap(scores, targets)
    np.testing.assert_allclose(average_precision_per_class(scores, targets), expected, rtol=0, atol=1e-9)
    assert mean_average_precision(scores, targets) == pytest.approx(expected.mean(), abs=1e-9)


def test_ap_matches_sklearn_across_class_chunks(monkeypatch):
    # A tiny chunk forces several class chunks, including a ragged last one.
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 7 * 100)
    scores, targets = _random(3, samples=100, classes=23, decimals=1)
    np.testing.assert_allclose(average_precision_per_class(scores, targets), _sklearn_ap(scores, targets),
                               atol=1e-9)


def test_ap_permutation_invariant_with_ties():
    scores, targets = _random(4, decimals=1)
    perm = np.random.default_rng(5).permutation(scores.shape[0])
    a = average_precision_per_class(scores, targets)
    b = average_precision_per_class(scores[perm], targets[perm])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_ap_paper_formula_by_hand():
    # Ranked scores 0.9 .. 0.5 with positives at ranks 1, 3, 5 (no ties):
    # AP = (1/1 + 2/3 + 3/5) / 3 = (1 + 0.666667 + 0.6) / 3 = 0.755556
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    targets = np.array([[1], [0], [1], [0], [1]])
    assert mean_average_precision(scores, targets) == pytest.approx(100 * (1 + 2 / 3 + 3 / 5) / 3)
    # Same samples, shuffled: the ranking and so the AP are unchanged.
    order = [3, 0, 4, 2, 1]
    assert mean_average_precision(scores[order], targets[order]) == pytest.approx(100 * (1 + 2 / 3 + 3 / 5) / 3)


def test_ap_tied_group_by_hand():
    # Scores 0.9 (pos), 0.5 (neg), 0.5 (pos), 0.1 (neg). The tied pair is one threshold: at its end 2 of 3
    # ranked samples are positive, so AP = (1/1 + 2/3) / 2 = 0.833333 whichever of the pair is listed first
    # (breaking the tie by order would give 1.0 or 0.833333).
    scores = np.array([[0.9], [0.5], [0.5], [0.1]])
    targets = np.array([[1], [0], [1], [0]])
    assert mean_average_precision(scores, targets) == pytest.approx(100 * (1 + 2 / 3) / 2)
    swapped = [0, 2, 1, 3]  # the positive of the pair now listed first
    assert mean_average_precision(scores[swapped], targets[swapped]) == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_ap_integer_and_float32_scores():
    scores, targets = _random(6, decimals=1)
    expected = _sklearn_ap(scores, targets)
    np.testing.assert_allclose(average_precision_per_class((scores * 10).astype(np.int64), targets), expected,
                               atol=1e-9)
    np.testing.assert_allclose(average_precision_per_class(scores.astype(np.float32), targets), expected,
                               atol=1e-9)


def test_no_positive_policy():
    # Class 0: positive ranked first (AP 100); class 1: positive ranked second (AP 50); class 2: no positives.
    scores = np.array([[0.9, 0.9, 0.5], [0.1, 0.8, 0.4]])
    targets = np.array([[1, 0, 0], [0, 1, 0]])
    ap = average_precision_per_class(scores, targets)
    np.testing.assert_allclose(ap[:2], [100.0, 50.0])
    assert np.isnan(ap[2])
    assert mean_average_precision(scores, targets) == pytest.approx(75.0)  # "skip": (100 + 50) / 2
    assert mean_average_precision(scores, targets, no_positive="skip") == pytest.approx(75.0)
    assert mean_average_precision(scores, targets, no_positive="zero") == pytest.approx(50.0)  # (100+50+0)/3
    out = multilabel_metrics(scores, targets, no_positive="zero")
    assert out["map"] == pytest.approx(50.0)
    assert out["map_no_positive_policy"] == "zero"
    assert out["map_no_positive_classes"] == 1


def test_no_positive_anywhere():
    scores, targets = np.array([[0.3, 0.2]]), np.array([[0, 0]])
    assert np.isnan(mean_average_precision(scores, targets, no_positive="skip"))
    assert mean_average_precision(scores, targets, no_positive="zero") == 0.0


def test_no_positive_policy_is_validated():
    with pytest.raises(ValueError, match=r"'ignore'.*\['skip', 'zero'\]"):
        mean_average_precision(np.zeros((2, 2)), np.zeros((2, 2)), no_positive="ignore")


def test_unknown_targets_are_ignored():
    scores, targets = _random(7, decimals=1)
    rng = np.random.default_rng(8)
    unknown = rng.random(targets.shape) < 0.2
    unknown[0] = False  # keep a positive per class
    with_unknown = np.where(unknown, -1, targets)
    ap = average_precision_per_class(scores, with_unknown)
    for c in range(scores.shape[1]):
        keep = ~unknown[:, c]
        assert ap[c] == pytest.approx(100 * average_precision_score(targets[keep, c], scores[keep, c]), abs=1e-9)
    # Unknowns given the highest score change nothing.
    boosted = np.where(unknown, 2.0, scores)
    np.testing.assert_allclose(average_precision_per_class(boosted, with_unknown), ap, atol=1e-12)


def test_class_with_only_unknown_positives_has_no_positive():
    scores = np.array([[0.9, 0.9], [0.1, 0.8]])
    targets = np.array([[1, -1], [0, 0]])
    assert np.isnan(average_precision_per_class(scores, targets)[1])


@pytest.mark.parametrize("bad, match", [
    (dict(targets=np.array([[2, 0]])), r"1 \(positive\), 0 \(negative\) or -1"),
    (dict(targets=np.array([[1, 0, 0]])), "shape"),
    (dict(scores=np.array([[np.nan, 0.2]])), "NaN"),
    (dict(scores=np.array([0.1, 0.2])), "2-D"),
])
def test_bad_inputs(bad, match):
    args = dict(scores=np.array([[0.1, 0.2]]), targets=np.array([[1, 0]]))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        mean_average_precision(args["scores"], args["targets"])


# ------------------------------------------------------------------------------------- thresholded metrics

PROBS = np.array([[0.9, 0.2], [0.6, 0.7], [0.3, 0.8], [0.1, 0.4]])
TARGETS = np.array([[1, 0], [0, 1], [1, 1], [0, 1]])


def test_thresholded_by_hand():
    # At 0.5, class 0 predicts samples 0, 1 (TP 1, FP 1) and has positives 0, 2: precision 1/2, recall 1/2.
    # Class 1 predicts samples 1, 2 (TP 2) and has positives 1, 2, 3: precision 1, recall 2/3.
    # CP = (1/2 + 1) / 2 = 75; CR = (1/2 + 2/3) / 2 = 58.333; CF1 = 2 * 75 * 58.333 / 133.333 = 65.625.
    # Overall: 3 TP of 4 predictions, 5 positives: OP = 75, OR = 60, OF1 = 2 * 75 * 60 / 135 = 66.667.
    out = thresholded_metrics(PROBS, TARGETS)
    assert out == pytest.approx({"cp": 75.0, "cr": 175 / 3, "cf1": 65.625, "op": 75.0, "or": 60.0,
                                 "of1": 200 / 3})


def test_thresholded_threshold_and_unknowns():
    # At 0.35 class 0 adds no prediction (0.3 < 0.35) and class 1 adds sample 3 (0.4, positive): recall 1.
    assert thresholded_metrics(PROBS, TARGETS, threshold=0.35)["cr"] == pytest.approx(75.0)
    # Marking sample 1 of class 0 unknown removes its false positive: class-0 precision 1, CP = 100.
    targets = TARGETS.copy()
    targets[1, 0] = -1
    assert thresholded_metrics(PROBS, targets)["cp"] == pytest.approx(100.0)
    assert thresholded_metrics(PROBS, targets)["op"] == pytest.approx(100.0)


def test_thresholded_matches_sklearn_with_zero_policy():
    rng = np.random.default_rng(9)
    probs = rng.random((200, 10))
    targets = (rng.random((200, 10)) < 0.3).astype(int)
    targets[:, 3] = 0           # a class without positives
    probs[:, 5] = 0.1           # a class never predicted
    pred = (probs >= 0.5).astype(int)
    out = thresholded_metrics(probs, targets, no_positive="zero")
    assert out["cp"] == pytest.approx(100 * precision_score(targets, pred, average="macro", zero_division=0))
    assert out["cr"] == pytest.approx(100 * recall_score(targets, pred, average="macro", zero_division=0))
    assert out["op"] == pytest.approx(100 * precision_score(targets, pred, average="micro", zero_division=0))
    assert out["or"] == pytest.approx(100 * recall_score(targets, pred, average="micro", zero_division=0))
    # "skip" averages over the 9 classes with positives instead of 10.
    skip = thresholded_metrics(probs, targets, no_positive="skip")
    assert skip["cr"] == pytest.approx(out["cr"] * 10 / 9)


def test_thresholded_rejects_logits():
    with pytest.raises(ValueError, match="probabilities.*sigmoid"):
        thresholded_metrics(np.array([[-2.0, 3.0]]), np.array([[0, 1]]))
    assert thresholded_metrics(sigmoid(np.array([[-2.0, 3.0]])), np.array([[0, 1]]))["of1"] == 100.0


def test_sigmoid():
    x = np.array([-1000.0, -1.0, 0.0, 2.0, 1000.0])
    np.testing.assert_allclose(sigmoid(x), [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-2.0)), 1.0], atol=1e-12)


# ---------------------------------------------------------------------------------------------------- F1@K

SCORES_K = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.7, 0.6], [0.5, 0.1, 0.4, 0.3]])
TARGETS_K = np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0]])


def test_f1_at_k_by_hand():
    # Top-2 per image: {0, 1} (1 right), {2, 3} (2 right), {0, 2} (0 right): 3 right of 6 predictions,
    # 4 positives. P = 50, R = 75, F1 = 2 * 50 * 75 / 125 = 60.
    assert precision_recall_at_k(SCORES_K, TARGETS_K, 2) == pytest.approx((50.0, 75.0, 60.0))
    # Top-1: {0} right, {2} right, {0} wrong: P = 2/3, R = 2/4, F1 = 2 * (2/3) * (1/2) / (7/6) = 4/7.
    assert f1_at_k(SCORES_K, TARGETS_K, 1) == pytest.approx(100 * 4 / 7)
    # An unknown among the predictions counts as neither: image 2's class 0 unknown leaves 3 right of 5.
    targets = TARGETS_K.copy()
    targets[2, 0] = -1
    assert precision_recall_at_k(SCORES_K, targets, 2) == pytest.approx((60.0, 75.0, 2 * 60 * 75 / 135))


def test_f1_at_k_validates_k():
    with pytest.raises(ValueError, match="k=5"):
        f1_at_k(SCORES_K, TARGETS_K, 5)


# -------------------------------------------------------------------------------------------- aggregates

def test_multilabel_metrics_keys_and_zero_shot():
    scores, targets = _random(10, classes=8, decimals=2)
    probs = sigmoid(scores)
    unseen = [1, 4, 6]
    out = multilabel_metrics(probs, targets, unseen=unseen)
    assert set(out) == {"map", "cp", "cr", "cf1", "op", "or", "of1", "f1_at_3", "f1_at_5", "zsl_map", "gzsl_map",
                        "map_no_positive_policy", "map_no_positive_classes"}
    assert out["map"] == pytest.approx(mean_average_precision(scores, targets))  # monotonic: same as on logits
    assert out["zsl_map"] == pytest.approx(mean_average_precision(probs[:, unseen], targets[:, unseen]))
    assert out["zsl_map"] == pytest.approx(_sklearn_ap(scores, targets)[unseen].mean())
    assert out["gzsl_map"] == pytest.approx(out["map"])
    mask = np.zeros(8, dtype=bool)
    mask[unseen] = True
    assert multilabel_metrics(probs, targets, unseen=mask)["zsl_map"] == pytest.approx(out["zsl_map"])
    assert out["f1_at_3"] == pytest.approx(f1_at_k(probs, targets, 3))
    assert "zsl_map" not in multilabel_metrics(probs, targets)


def test_multilabel_metrics_few_classes_and_bad_unseen():
    out = multilabel_metrics(PROBS, TARGETS)
    assert np.isnan(out["f1_at_3"]) and np.isnan(out["f1_at_5"])  # 2 classes: top-3 is undefined
    with pytest.raises(ValueError, match="unseen class indices"):
        multilabel_metrics(PROBS, TARGETS, unseen=[2])
    with pytest.raises(ValueError, match="one entry per class"):
        multilabel_metrics(PROBS, TARGETS, unseen=np.array([True]))


# ---------------------------------------------------------------------------------------------- top-k

def test_top_k_by_hand():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0]])
    labels = np.array([0, 2, 0])
    # Sample 0 is right at top-1; sample 1's label is second; sample 2 is all ties, which count against it.
    assert top_k_accuracy(logits, labels, 1) == pytest.approx(100 / 3)
    assert top_k_accuracy(logits, labels, 2) == pytest.approx(200 / 3)
    assert top_k_accuracy(logits, labels, 3) == pytest.approx(100.0)
    out = singlelabel_metrics(logits, labels)
    assert out["top1"] == pytest.approx(100 / 3) and np.isnan(out["top5"])


def test_top_k_against_argsort():
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(500, 10))
    labels = rng.integers(0, 10, size=500)
    ranked = np.argsort(-logits, axis=1)
    out = singlelabel_metrics(logits, labels)
    assert out["top1"] == pytest.approx(100 * (ranked[:, 0] == labels).mean())
    assert out["top5"] == pytest.approx(100 * (ranked[:, :5] == labels[:, None]).any(axis=1).mean())


def test_top_k_bad_labels():
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        top_k_accuracy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="integer class indices"):
        top_k_accuracy(np.zeros((2, 3)), np.array([0.0, 1.0]))
