"""Claim 5: fixed random queries work as well as learnable ones; queries may differ between training and
inference (word queries)."""
from ._base import PROXY, SETTING, SMALL, Hypothesis, Study, register_study

FIXED, LEARNABLE = f"mldecoder({SMALL})", f'mldecoder({SMALL}, queries="learnable")'
WORD = f'mldecoder({SMALL}, queries="word", word_dim=384)'
# How far learnable queries must move from their random start (||q - q0|| / ||q0||) for "fixed vs learnable" to
# compare two different functions: a fifth of their norm, about 11 degrees per query (LayerNorm makes only the
# direction count). With their own learning rate (bench.training.TrainConfig.query_lr_scale) they move ~0.4.
MIN_QUERY_SHIFT = 0.2

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
))
