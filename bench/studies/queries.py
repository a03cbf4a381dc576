"""Claim 5: fixed random queries work as well as learnable ones; queries may differ between training and
inference (word queries)."""
from ._base import PROXY, SMALL, Study, register_study

STUDY = register_study(Study(
    name="queries",
    claim=5,
    statement="Fixed random queries work as well as learnable ones; queries may differ between training and "
              "inference.",
    paper="Section 3.2 / ablations: frozen random queries give the same mAP as learnable ones (COCO); with word "
          "queries the class set may change at inference (zero-shot).",
    base=dict(PROXY),
    variations=[dict(heads=[f"mldecoder({SMALL})", f'mldecoder({SMALL}, queries="learnable")',
                            f'mldecoder({SMALL}, queries="word", word_dim=384)'])],
    notes="Word queries are the class names embedded by the offline all-MiniLM-L6-v2 model (384-d). Accuracy "
          "is the CPU-scale proxy (scenes, small backbone from scratch), mean ± std over seeds.",
))
