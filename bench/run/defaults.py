"""Every default of a run, as plain data in one place (no torch, no registries, so the command line reads it at
start-up): the CLI's option values, the CPU training run, and the per-dataset training defaults.
``bench.run.config.resolve_config`` applies them."""
from __future__ import annotations

from typing import Dict

from .results import DEFAULT_RESULTS_DIR

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
PROTOCOLS = ("finetune", "probe", "eval")

# What a run measures when the options do not say. Training on a CPU gets a small backbone and the attention heads
# at CPU-scale widths (the paper's D=768, FFN 2048 would cost more than the backbone); cost runs and GPU runs get
# the paper's heads.
CPU_SMALL = "embed=128, ffn=512, heads=4"
DEFAULT_HEADS = "gap,txdec,mldecoder"
DEFAULT_HEADS_CPU_TRAINING = f"gap,txdec({CPU_SMALL}),mldecoder({CPU_SMALL})"
DEFAULT_BACKBONE = "resnet50"
# Training on a CPU with no --backbone: a real ImageNet-pretrained backbone whose weights install with headbench
# (bench.backbones.pretrained), frozen, its features of each image computed once and shared by every head and seed.
DEFAULT_BACKBONE_CPU_TRAINING = "tf_efficientnet_lite0"
DEFAULT_CPU_TRAINING = dict(pretrained=True, protocol="probe", img_size=128)
COST_IMG_SIZE = 224  # a cost-only run's resolution (ImageNet's); a training run's is its dataset's
# The defaults that depend on nothing else (the CLI's option declarations show these values).
DEFAULTS = dict(num_classes=80, batch_sizes=(1, 32), device="auto", dtype="fp32", channels_last=False,
                compile=False, cost_only=False, timing=True, latency=True, min_time_s=1.0, dataset="scenes",
                seeds=(0, 1, 2), train_batch_size=64, results_dir=DEFAULT_RESULTS_DIR, knn=0)

# A dataset not listed below: ImageNet's resolution, ten epochs, two loader workers.
GENERIC = dict(img_size=224, epochs=10, workers=2)

DATASET_DEFAULTS = {
    "scenes": dict(img_size=64, epochs=5, workers=0),  # generated in-process faster than workers start; 64 px: the
    # default run in 3-5 min on 2 CPU cores, heads still apart (at 3 epochs they are not: measured; the studies keep
    # 96 px, their PROXY)
    "fashion-mnist": dict(img_size=56, epochs=3),
    "fashion-mosaic": dict(img_size=112, epochs=3),
    "coco2014": dict(img_size=448, epochs=40),
    "voc2007": dict(img_size=448, epochs=40),
    "nuswide-zsl": dict(img_size=224, epochs=20),
    "openimages": dict(img_size=224, epochs=10),
    "imagefolder": dict(img_size=224, epochs=90),
    "emoji": dict(img_size=128, epochs=3),  # glyphs of 26-64 px; EfficientNet-Lite0 features at ~200 img/s on 2
    # CPU cores; a full ML-Decoder probe step (K=100 queries, D=768) ~1.8 s there, so 3 epochs of the default 4000
    # images (~190 steps) are ~6 min per (backbone, seed)
}


def dataset_defaults(name: str) -> Dict[str, int]:
    """The training defaults of the dataset called ``name`` (img_size, epochs, workers): its own where it has
    them, else ``GENERIC``'s."""
    return {**GENERIC, **DATASET_DEFAULTS.get(name, {})}
