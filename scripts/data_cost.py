"""What making one image costs, per dataset, on this machine: the generator's own drawing (``_draw`` for the
synthetic datasets) and a whole ``dataset[i]`` (drawing or reading, resizing, the render cache, the target), in ms
an image of one core, the median of 3 rounds of 300 images each. Beside ``scripts/feature_cost.py``: how much of the
backbone's time the data would take even if nothing else cost anything.

    python scripts/data_cost.py            # writes reports/perf/data_cost.md
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.datasets import create_dataset, emoji, scenes  # noqa: E402
from bench.measure.alloc import keep_freed_memory  # noqa: E402
from bench.run.results import cpu_name  # noqa: E402

N, ROUNDS = 300, 3
SPECS = ["scenes", "emoji", "fashion-mnist"]


def per_image_ms(fn, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + N):
        fn(i)
    return (time.perf_counter() - t0) / N * 1000.0


def main() -> None:
    keep_freed_memory()  # the allocator regime extraction runs in
    rows = []
    for name in SPECS:
        ds = create_dataset(f"{name}(train_size={2 * N * ROUNDS + 10}, val_size=8)", "train", img_size=128,
                            interpolation="bicubic")
        draw = getattr(ds, "_draw", None)
        d = [per_image_ms(draw, r * N) for r in range(ROUNDS)] if draw else []
        scenes.RENDER_CACHE.clear()
        emoji.RENDER_CACHE.clear()
        g = [per_image_ms(ds.__getitem__, (ROUNDS + r) * N) for r in range(ROUNDS)]
        rows.append((name, statistics.median(d) if d else None, statistics.median(g)))
        print(rows[-1], flush=True)
    cpu = cpu_name()
    lines = ["# What making one image costs", "",
             f"`python scripts/data_cost.py` on {cpu}, {time.strftime('%Y-%m-%d')}: ms an image (one core), 128 px, "
             f"bicubic, the median of {ROUNDS} rounds of {N} images.", "",
             "| dataset | drawing (`_draw`) | `dataset[i]` |", "|---|---|---|"]
    lines += [f"| {n} | {'—' if d is None else f'{d:.2f}'} | {g:.2f} |" for n, d, g in rows]
    out = "reports/perf/data_cost.md"
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
