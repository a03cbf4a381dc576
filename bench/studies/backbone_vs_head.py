"""Claim 4: a smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy trade-off)."""
from ._base import PROXY, SMALL, Hypothesis, Study, register_study

SMALLER, LARGER = "test_resnet", "resnet10t"
MLD = f"mldecoder({SMALL})"

STUDY = register_study(Study(
    name="backbone-vs-head",
    claim=4,
    statement="A smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy "
              "trade-off).",
    paper="README figure (COCO, 448): TResNet-M + ML-Decoder 23.9 GFLOPs / 88.1 mAP against TResNet-L + GAP "
          "35.3 GFLOPs / 89.4 (not beaten there), and TResNet-S + ML-Decoder 19.5 / 87.7 against TResNet-M + GAP "
          "23.0 / 87.3 (beaten).",
    base=dict(PROXY, timing=True, batch_sizes=[1, 32], img_size=64),
    variations=[dict(backbones=[SMALLER, LARGER], heads=["gap", MLD])],
    notes="Two backbones 5.6x apart in MACs (timm's test_resnet and resnet10t at 64 px), each with GAP and with "
          "ML-Decoder; the Pareto plot shows whether a smaller "
          "backbone + ML-Decoder dominates a larger backbone + GAP at CPU scale (scenes, from scratch). On COCO "
          "with pretrained weights: --dataset coco2014 --data-root ... --pretrained --backbone tresnet_m,tresnet_l.",
    hypotheses=[
        Hypothesis(name="smaller + ML-Decoder beats larger + GAP",
                   statement=f"{SMALLER} + ML-Decoder has a higher mAP than {LARGER} + GAP (a win at lower cost)",
                   variant={"backbone": SMALLER, "head": MLD}, reference={"backbone": LARGER, "head": "gap"},
                   test="better", per=("dataset", "img_size")),
        Hypothesis(name="smaller + ML-Decoder as good as larger + GAP",
                   statement=f"{SMALLER} + ML-Decoder loses less than 1 mAP point against {LARGER} + GAP (a better "
                             "trade-off when it is also cheaper)",
                   variant={"backbone": SMALLER, "head": MLD}, reference={"backbone": LARGER, "head": "gap"},
                   test="not_worse", margin=1.0, per=("dataset", "img_size")),
    ],
))
