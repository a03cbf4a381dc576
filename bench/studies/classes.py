"""Claim 2 (classes): head cost against the number of classes for GAP, the full decoder, ML-Decoder with full
decoding and ML-Decoder with 100 groups."""
from ._base import Study, register_study

NUM_CLASSES = [80, 1000, 5000, 9605, 20000]


def _heads(cfg):
    n = cfg["num_classes"]
    return ["gap", "txdec", f"mldecoder(groups={n})", "mldecoder(groups=100)"]


STUDY = register_study(Study(
    name="classes",
    claim=2,
    statement="Group decoding makes the cost independent of N beyond the group FC: it scales to thousands of "
              "classes.",
    paper="Open Images, 9605 classes, TResNet-M 224 with 200 groups: 86.8 mAP; full decoding or a transformer "
          "decoder with one query per class would be prohibitive at that N.",
    base=dict(backbones=["tresnet_m"], img_size=224, batch_sizes=[1], cost_only=True, timing=True),
    variations=[dict(num_classes=n, heads=_heads) for n in NUM_CLASSES],
    notes="The paper's Open Images setting (TResNet-M at 224). Expected: GAP and ML-Decoder K=100 grow only by "
          "their final linear/group FC (linear in N with a small slope), ML-Decoder full decoding grows linearly "
          "with a large slope, txdec quadratically.",
    # A cost claim, no accuracy hypothesis. Cost rule: ML-Decoder K=100 grows by less than this factor from N_ref
    # (the smallest N >= 100) to the largest N, while full decoding grows about linearly (log-log slope above).
    cost_rules=dict(groups_max_growth=1.5, full_min_slope=0.8),
))
