"""Claim 2 (groups): group decoding with K queries; cost and accuracy against K."""
from ._base import PROXY, SETTING, SMALL, Hypothesis, Study, register_study

GROUPS = [1, 5, 10, 20, 50, 100]
PROXY_CLASSES = 48  # the `scenes` proxy's N: its accuracy grid is K in {1, 5, 10, 20} and full decoding K = 48


def _heads(cfg):
    n = cfg["num_classes"]
    return [f"mldecoder(groups={k})" for k in GROUPS if k < n] + [f"mldecoder(groups={n})"]


def _small_heads(cfg):
    n = cfg["num_classes"]
    return [f"mldecoder({SMALL}, groups={k})" for k in GROUPS if k < n] + [f"mldecoder({SMALL}, groups={n})"]


STUDY = register_study(Study(
    name="groups",
    claim=2,
    statement="Group decoding makes the cost independent of N beyond the group FC: it scales to thousands of "
              "classes.",
    paper="K = 100 groups by default (K = min(100, N)); Open Images (9605 classes) with 200 groups: 86.8 mAP; "
          "the paper reports that fewer groups cost less and lose little accuracy.",
    base=dict(PROXY),
    variations=[dict(backbones=["tresnet_m"], img_size=448, num_classes=1000, batch_sizes=[1], timing=True,
                     cost_only=True, heads=_heads),
                dict(heads=_small_heads)],
    notes="K in {1, 5, 10, 20, 50, 100, N}, keeping those below N. Cost at N=1000 on tresnet_m at 448 with "
          "--cost-only; accuracy on the given dataset (CPU-scale proxy: scenes, N = 48; the hypotheses name "
          "its heads, so on another dataset they report 'not run').",
    hypotheses=[
        Hypothesis(name=f"K={k} vs full decoding",
                   statement=f"ML-Decoder with K={k} groups loses less than 1 mAP point against full decoding "
                             f"(K = N = {PROXY_CLASSES})",
                   variant={"head": f"mldecoder({SMALL}, groups={k})"},
                   reference={"head": f"mldecoder({SMALL}, groups={PROXY_CLASSES})"},
                   test="not_worse", margin=1.0, per=SETTING)
        for k in GROUPS if k < PROXY_CLASSES
    ],
))
