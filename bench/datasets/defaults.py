"""Per-dataset defaults of training runs (resolution, epochs, loader workers), shared by ``bench run``,
``bench study`` and ``bench.distributed`` through ``dataset_defaults`` (``bench.config.resolve_config`` applies
them)."""
from typing import Dict

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
