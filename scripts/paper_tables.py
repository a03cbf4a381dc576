"""Write results/paper/*.csv: the ML-Decoder paper's published figures as tidy rows in the results schema.

Every figure is copied from shared/reference/ml-decoder-facts.md (the paper, the official README and MODEL_ZOO);
the ``source`` column says where each comes from. Rerun with ``python scripts/paper_tables.py``.
The paper's "FLOPs" are multiply-accumulates, so they go to ``gmacs_total``; its "TResNet-L" is timm's
``tresnet_v2_l``. ``*_std`` columns widen ``bench check``'s tolerance (2 x std) where a figure was read off a plot.
"""
import os

import pandas as pd

from bench.run.results import COLUMNS

README = "official README figure 'COCO mAP vs FLOPs' (read by eye, +-0.1)"
ZOO = "official README / MODEL_ZOO (released checkpoint)"

TABLES = {
    # Accuracy of released checkpoints: what `bench run --protocol eval --checkpoint ...` should reproduce.
    "coco.csv": [
        dict(backbone="tresnet_v2_l", head="mldecoder", img_size=448, map=90.1, source=ZOO),
        dict(backbone="tresnet_m", head="mldecoder", img_size=224, map=84.2, source=ZOO),
        dict(backbone="tresnet_xl", head="mldecoder", img_size=640, map=91.4,
             source="official README (the WACV text says 91.1)"),
        dict(backbone="tresnet_l", head="gap", img_size=448, map=86.6,
             source="paper: GAP with ASL, TResNet-L 448 (the ASL paper's model, timm tresnet_l)"),
    ],
    # The README's speed-accuracy figure, cost axis: GAP vs ML-Decoder per backbone at 448, N=80. Cost does not
    # depend on the data, so no dataset: `bench check` matches these against cost-only rows (the compute study).
    "coco_flops.csv": [
        dict(backbone="tresnet_m", head="gap", img_size=448, gmacs_total=23.0, source=README),
        dict(backbone="tresnet_m", head="mldecoder", img_size=448, gmacs_total=23.9, source=README),
        dict(backbone="tresnet_v2_l", head="gap", img_size=448, gmacs_total=35.3, source=README),
        dict(backbone="tresnet_v2_l", head="mldecoder", img_size=448, gmacs_total=36.2, source=README),
    ],
    # The same figure, accuracy axis (models trained by the paper's recipe; not the released checkpoints).
    "coco_figure.csv": [
        dict(backbone="tresnet_m", head="gap", img_size=448, map=87.3, source=README),
        dict(backbone="tresnet_m", head="mldecoder", img_size=448, map=88.1, source=README),
        dict(backbone="tresnet_v2_l", head="gap", img_size=448, map=89.4, source=README),
        dict(backbone="tresnet_v2_l", head="mldecoder", img_size=448, map=90.0, source=README),
    ],
    "openimages.csv": [
        dict(backbone="tresnet_m", head="mldecoder(groups=200)", img_size=224, num_classes=9605, map=86.8,
             source=ZOO + ": Open Images, 9605 classes, 200 groups"),
    ],
    "nuswide.csv": [
        dict(backbone="tresnet_v2_l", head='mldecoder(queries="word")', num_classes=1006, zsl_map=31.1,
             source="paper: NUS-WIDE zero-shot mAP (prior methods 9.4 - 15.1); 925 seen / 81 unseen labels"),
    ],
    "imagenet.csv": [
        dict(backbone="resnet50", head="mldecoder", num_classes=1000, top1=80.7,
             source="paper: ImageNet top-1, vanilla ResNet50 + ML-Decoder, no extra data"),
        dict(backbone="resnet50", head="gap", num_classes=1000, top1=80.4,
             source="paper: timm's GAP ResNet50 A1 recipe (A2: 79.8)"),
    ],
    "voc.csv": [
        dict(head="mldecoder", num_classes=20, map=96.6, source="paper: Pascal-VOC 2007 mAP (backbone as the "
             "paper's VOC table; not named in the facts sheet)"),
    ],
}
DATASETS = {"coco.csv": "coco2014", "coco_flops.csv": "", "coco_figure.csv": "coco2014", "openimages.csv": "openimages",
            "nuswide.csv": "nuswide-zsl", "imagenet.csv": "imagefolder", "voc.csv": "voc2007"}
STD = {"coco_flops.csv": dict(gmacs_total_std=0.05), "coco_figure.csv": dict(map_std=0.05)}


def main(out_dir: str = os.path.join("results", "paper")) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name, rows in TABLES.items():
        df = pd.DataFrame([{"run_id": "paper", "dataset": DATASETS[name] or None,
                            **({"num_classes": 80} if name.startswith("coco") else {}), **r,
                            **STD.get(name, {})} for r in rows])
        extra = [c for c in df.columns if c not in COLUMNS]
        df = df.reindex(columns=COLUMNS + extra)
        df.to_csv(os.path.join(out_dir, name), index=False)
        print(os.path.join(out_dir, name), len(df), "rows")


if __name__ == "__main__":
    main()
