"""Claim 3: ML-Decoder beats GAP on every backbone at a small extra cost (about +0.9 GMACs at 448)."""
from ._base import Study, grid, register_study

STUDY = register_study(Study(
    name="compute",
    claim=3,
    statement="ML-Decoder beats GAP on every backbone at a small extra cost (about +0.9 GMACs at 448).",
    paper="README figure (COCO, 448): TResNet-M 23.0 -> 23.9 GFLOPs, TResNet-L 35.3 -> 36.2 GFLOPs (GAP -> "
          "ML-Decoder); mAP 87.3 -> 88.1 and 89.4 -> 90.0. The paper's FLOPs are MACs; its TResNet-L is "
          "timm's tresnet_v2_l.",
    base=dict(heads=["gap", "gmp", "mldecoder"], num_classes=80, batch_sizes=[1], cost_only=True, timing=True),
    variations=grid(backbones=[["tresnet_m"], ["tresnet_v2_l"], ["tresnet_l"]], img_size=[224, 448, 640]),
    notes="Cost is measured on exactly the paper's models (random weights: cost does not depend on them). "
          "Accuracy needs COCO and a GPU: `bench run --dataset coco2014 --data-root ... --protocol eval "
          "--checkpoint ...` then `bench check --baseline results/paper/coco.csv`.",
    # No accuracy hypothesis on the CPU (COCO and the official checkpoints are needed). Cost rule: backbone+head
    # GMACs within the figure's reading tolerance (2x the row's gmacs_total_std, else this many GMACs).
    cost_rules=dict(figure_tolerance=0.1),
))
