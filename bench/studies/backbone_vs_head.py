"""Claim 4: a smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy trade-off)."""
from ._base import PROXY, SMALL, Study, register_study

STUDY = register_study(Study(
    name="backbone-vs-head",
    claim=4,
    statement="A smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy "
              "trade-off).",
    paper="README figure (COCO, 448): TResNet-M + ML-Decoder 23.9 GFLOPs / 88.1 mAP against TResNet-L + GAP "
          "35.3 GFLOPs / 89.4 (not beaten there), and TResNet-S + ML-Decoder 19.5 / 87.7 against TResNet-M + GAP "
          "23.0 / 87.3 (beaten).",
    base=dict(PROXY, timing=True, batch_sizes=[1, 32], img_size=64, seeds=[0, 1]),
    variations=[dict(backbones=["test_resnet", "resnet10t"], heads=["gap", f"mldecoder({SMALL})"])],
    notes="Two backbones 5.6x apart in MACs (timm's test_resnet and resnet10t at 64 px), each with GAP and with "
          "ML-Decoder; the Pareto plot shows whether a smaller "
          "backbone + ML-Decoder dominates a larger backbone + GAP at CPU scale (scenes, from scratch). On COCO "
          "with pretrained weights: --dataset coco2014 --data-root ... --pretrained --backbone tresnet_m,tresnet_l.",
))
