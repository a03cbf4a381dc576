"""Claim 6: with word queries ML-Decoder generalises to unseen classes; query augmentation improves that."""
from ._base import PROXY, SMALL, Hypothesis, Study, register_study

WORD = f'mldecoder({SMALL}, queries="word", word_dim=384'
PLAIN = WORD + ")"
# Additive query noise relative to the embeddings' norm (bench.heads.mldecoder): a tenth, a third and all of it.
NOISE = [0.1, 0.3, 1.0]
RANDOM_QUERIES = 8
SEEN = "scenes(holdout=8)"
CONTROL = 'scenes(holdout=8, embeddings="random")'
PER = ("backbone", "img_size")  # the control differs by its dataset spec

STUDY = register_study(Study(
    name="zsl",
    claim=6,
    statement="With word queries it generalises to unseen classes; query augmentation (random queries, additive "
              "noise) improves that.",
    paper="NUS-WIDE zero-shot: 31.1 mAP on the 81 unseen labels (prior methods 9.4 - 15.1). The query "
          "augmentations are described in the paper; the public code has none.",
    base=dict(PROXY, dataset=SEEN),
    variations=[
        dict(heads=[PLAIN] + [WORD + f", query_noise={q})" for q in NOISE]
             + [WORD + f", random_queries={RANDOM_QUERIES})"]),
        dict(dataset=CONTROL, heads=[PLAIN]),
    ],
    notes="8 colour-shape classes are never positive in training (their colour and shape are seen in other "
          "classes); ZSL mAP is over those 8, GZSL over all 48. The control replaces the class-name embeddings by "
          "random vectors of the same size: if word queries carry meaning, the control is at chance on unseen "
          "classes. Query noise is relative to the embeddings' norm, swept over "
          + ", ".join(map(str, NOISE)) + ".",
    hypotheses=[
        Hypothesis(name="word queries vs the control",
                   statement="word queries give a higher ZSL mAP on the held-out classes than the same head with "
                             "random class embeddings (the measured chance level)",
                   variant={"head": PLAIN, "dataset": SEEN}, reference={"head": PLAIN, "dataset": CONTROL},
                   test="better", metric="zsl_map", per=PER, above_chance=None),
    ] + [
        Hypothesis(name=name, statement=f"{what} raises the ZSL mAP of word queries",
                   variant={"head": head, "dataset": SEEN}, reference={"head": PLAIN, "dataset": SEEN},
                   test="better", metric="zsl_map", per=PER, chance={"head": PLAIN, "dataset": CONTROL})
        for name, what, head in
        [(f"query noise {q}", f"additive query noise ({q} of the embeddings' norm)", WORD + f", query_noise={q})")
         for q in NOISE]
        + [(f"{RANDOM_QUERIES} random queries", f"{RANDOM_QUERIES} random negative queries",
            WORD + f", random_queries={RANDOM_QUERIES})")]
    ],
))
