"""Claim 6: with word queries ML-Decoder generalises to unseen classes; query augmentation improves that."""
from ._base import PROXY, SMALL, Study, register_study

WORD = f'mldecoder({SMALL}, queries="word", word_dim=384'

STUDY = register_study(Study(
    name="zsl",
    claim=6,
    statement="With word queries it generalises to unseen classes; query augmentation (random queries, additive "
              "noise) improves that.",
    paper="NUS-WIDE zero-shot: 31.1 mAP on the 81 unseen labels (prior methods 9.4 - 15.1). The query "
          "augmentations are described in the paper; the public code has none.",
    base=dict(PROXY, dataset="scenes(holdout=8)"),
    variations=[
        dict(heads=[WORD + ")", WORD + ", query_noise=0.1)", WORD + ", random_queries=8)",
                    WORD + ", query_noise=0.1, random_queries=8)"]),
        dict(dataset='scenes(holdout=8, embeddings="random")', heads=[WORD + ")"]),
    ],
    notes="8 colour-shape classes are never positive in training (their colour and shape are seen in other "
          "classes); ZSL mAP is over those 8, GZSL over all 48. The control replaces the class-name embeddings by "
          "random vectors of the same size: if word queries carry meaning, the control is at chance on unseen "
          "classes.",
))
