"""Claim 4: a smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy trade-off)."""
from . import PROXY, SMALL, Study, register_study

STUDY = register_study(Study(
    name="backbone-vs-head",
    claim=4,
    statement="A smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy "
              "trade-off).",
    paper="README figure (COCO, 448): TResNet-M + ML-Decoder 23.9 GFLOPs / 88.1 mAP against TResNet-L + GAP "
          "35.3 GFLOPs / 89.4 (not beaten there), and TResNet-S + ML-Decoder 19.5 / 87.7 against TResNet-M + GAP "
          "23.0 / 87.3 (beaten).",
    base=dict(PROXY, timing=True),
    variations=[dict(backbones=["resnet10t", "resnet18", "resnet34"],
                     heads=["gap", f"mldecoder({SMALL})"])],
    notes="A ladder of backbones, each with GAP and with ML-Decoder; the Pareto plot shows whether a smaller "
          "backbone + ML-Decoder dominates a larger backbone + GAP at CPU scale (scenes, from scratch). On COCO "
          "with pretrained weights: --dataset coco2014 --data-root ... --pretrained --backbone tresnet_m,tresnet_l.",
))
