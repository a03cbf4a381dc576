"""Does moving the data work off the main process help feature extraction on this machine? For 1,024 ``scenes``
images at 128 px, batch 32, EfficientNet-Lite0 (ImageNet weights) at 2 torch threads: the backbone alone on a batch
in memory, then extraction with the images made inline, in one DataLoader worker at nice 19, and in one plain
worker; each as images per wall second and as a share of the backbone's. Twice, interleaved.

    python scripts/extraction_overlap.py                        # reports/perf/extraction_overlap.md has its output
    OMP_WAIT_POLICY=PASSIVE python scripts/extraction_overlap.py
"""
import os
import sys
import time

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.backbones.model import create_backbone  # noqa: E402
from bench.datasets import create_dataset, scenes  # noqa: E402
from bench.measure.alloc import keep_freed_memory  # noqa: E402

B, N = 32, 1024


def nice_worker(_):
    os.nice(19)
    torch.set_num_threads(1)


def extraction(backbone, workers: int, init=None) -> float:
    scenes.RENDER_CACHE.clear()
    ds = create_dataset(f"scenes(train_size={N}, val_size=8)", "train", img_size=128, interpolation="bicubic")
    kw = dict(num_workers=workers, worker_init_fn=init, prefetch_factor=4) if workers else {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for x, _ in DataLoader(ds, batch_size=B, **kw):
            backbone(x.contiguous(memory_format=torch.channels_last))
    return N / (time.perf_counter() - t0)


def model_alone(backbone) -> float:
    x = torch.rand(B, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(N // B):
            backbone(x)
    return N / (time.perf_counter() - t0)


def main() -> None:
    keep_freed_memory()
    torch.set_num_threads(2)
    backbone = create_backbone("tf_efficientnet_lite0", pretrained=True).eval().to(memory_format=torch.channels_last)
    model_alone(backbone)  # warm-up
    for _ in range(2):
        m, a = model_alone(backbone), extraction(backbone, 0)
        b, c = extraction(backbone, 1, nice_worker), extraction(backbone, 1)
        print(f"model {m:.0f} img/s; inline {a:.0f} ({a / m:.2f}); worker at nice 19 {b:.0f} ({b / m:.2f}); "
              f"worker {c:.0f} ({c / m:.2f})", flush=True)


if __name__ == "__main__":
    main()
