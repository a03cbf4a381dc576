"""Claim 5: fixed random queries work as well as learnable ones; queries may differ between training and
inference (word queries).

One file: the grid and hypotheses (``STUDY``, at the end) and the claim's report code above it: the paper's figure
and a plot of the proxy accuracy per kind of queries (the verdicts are the hypotheses').
"""
from __future__ import annotations

from ..analysis.stats import accuracy_rows
from ..report.kit import Claim, Context, bars, failures, head_options, metric_of, stat
from ._base import EMOJI, PRETRAINED, PROXY, SETTING, SMALL, Hypothesis, Study, register_study

FIXED, LEARNABLE = f"mldecoder({SMALL})", f'mldecoder({SMALL}, queries="learnable")'
WORD = f'mldecoder({SMALL}, queries="word", word_dim=384)'
# How far learnable queries must move from their random start (||q - q0|| / ||q0||) for "fixed vs learnable" to
# compare two different functions: a fifth of their norm, about 11 degrees per query (LayerNorm makes only the
# direction count). With their own learning rate (bench.train.training.TrainConfig.query_lr_scale) they move ~0.4.
MIN_QUERY_SHIFT = 0.2


def _kind(head: str) -> str:
    """ML-Decoder's queries ("fixed", "learnable", "word"), or another head's name."""
    name, opts = head_options(head)
    return str(opts.get("queries", "fixed")) if name == "mldecoder" else name


def claim_code(claim: Claim, rows, ctx: Context) -> None:
    """The claim's paper figure and a bar plot of the proxy accuracy per kind of queries."""
    claim.paper_figure = "frozen random queries = learnable ones (COCO ablation)"
    if rows is None:
        return
    acc = accuracy_rows(rows)
    metric = metric_of(acc)
    if metric is not None and ctx.make_plots:
        heads = list(dict.fromkeys(acc["head"]))
        claim.plots.append(bars(ctx.out_dir, "claim5_queries.png", [_kind(h) for h in heads],
                                [stat(acc[acc["head"] == h][metric]) for h in heads], f"{metric} (%), mean ± std",
                                "Claim 5: fixed vs learnable vs word queries (CPU proxy)"))
    fail = failures(rows)
    if fail:
        claim.body.append(fail)


STUDY = register_study(Study(
    name="queries",
    claim=5,
    statement="Fixed random queries work as well as learnable ones; queries may differ between training and "
              "inference.",
    paper="Section 3.2 / ablations: frozen random queries give the same mAP as learnable ones (COCO); with word "
          "queries the class set may change at inference (zero-shot).",
    base=dict(PROXY),
    variations=[dict(heads=[FIXED, LEARNABLE, WORD])],
    notes="Word queries are the class names embedded by the offline all-MiniLM-L6-v2 model (384-d), shown for "
          "reference (claim 6 tests them). Learnable queries train with their own learning rate and no weight "
          "decay, and the rows record how far they moved (`query_shift`). Accuracy is the CPU-scale proxy "
          "(scenes, small backbone from scratch).",
    hypotheses=[
        Hypothesis(name="fixed vs learnable queries",
                   statement="ML-Decoder with fixed random queries loses less than 1 mAP point against learnable "
                             "queries, which must have moved at least "
                             f"{MIN_QUERY_SHIFT:g} of their initial norm",
                   variant={"head": FIXED}, reference={"head": LEARNABLE}, test="not_worse", margin=1.0,
                   per=SETTING, differ="query_shift", differ_min=MIN_QUERY_SHIFT),
    ],
    claim_code=claim_code,
))


PRETRAINED_STUDY = register_study(STUDY.on_rung(
    "pretrained",
    base=dict(PRETRAINED, dataset=EMOJI, epochs=4),
    variations=[dict(heads=[FIXED, LEARNABLE])],
    notes="Fixed against learnable queries on the frozen features of ImageNet-pretrained EfficientNet-Lite0 (128 "
          "px) on real colour emoji (100 classes, mAP), 4 epochs, 5 seeds. Word queries are left to claim 6's "
          "pretrained rung (they need twice the epochs there to learn). The learnable queries must have moved at least "
          f"{MIN_QUERY_SHIFT:g} of their norm (`query_shift`) for the comparison to count.",
))
