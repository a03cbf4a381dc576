"""Claim 2 (classes): head cost against the number of classes for GAP, the full decoder, ML-Decoder with full
decoding and ML-Decoder with 100 groups."""
from ._base import Study, register_study

NUM_CLASSES = [80, 1000, 5000, 9605, 20000]
MEMORY_BATCH = 32


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
    base=dict(backbones=["tresnet_m"], img_size=224, batch_sizes=[1], cost_only=True, timing=True, memory=False,
              train_timing=False),  # latency at batch 1; the batch-32 configurations below opt in to memory
    variations=[dict(num_classes=n, heads=_heads) for n in NUM_CLASSES]
    # Memory at scale: peak memory of inference and of a training step, and the step's time, at batch 32 (what
    # decides whether a head can be trained at that N at all). Latency at batch 32 is left out: at N=20,000 the
    # full decoder's forward alone takes minutes on a CPU.
    + [dict(num_classes=n, heads=_heads, batch_sizes=[MEMORY_BATCH], latency=False, memory=True,
            train_timing=True) for n in NUM_CLASSES],
    notes="The paper's Open Images setting (TResNet-M at 224). Expected: GAP and ML-Decoder K=100 grow only by "
          "their final linear/group FC (linear in N with a small slope), ML-Decoder full decoding grows linearly "
          "with a large slope, txdec quadratically. The batch-32 configurations add peak memory and the training "
          "step: a step that does not fit is recorded (train_status 'oom'), and the report's 'which heads fit' "
          "extrapolates from the measured slope.",
    # A cost claim, no accuracy hypothesis. Cost rule: ML-Decoder K=100 grows by less than this factor from N_ref
    # (the smallest N >= 100) to the largest N, while full decoding grows about linearly (log-log slope above).
    cost_rules=dict(groups_max_growth=1.5, full_min_slope=0.8),
))
