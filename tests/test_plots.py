"""Plot readability: log axes only where the data span a decade, tick labels that never overlap, point names in
a legend outside the axes (nothing drawn past the axes or over a point), horizontal share bars."""
from __future__ import annotations

import numpy as np
import pytest

from bench.report import plots


def _render(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _tick_boxes(ax, axis, renderer):
    labels = (ax.get_xticklabels() if axis == "x" else ax.get_yticklabels())
    return [t.get_window_extent(renderer) for t in labels if t.get_text() and t.get_visible()]


def _no_overlap(boxes) -> bool:
    return all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize("values, scale", [([0.0369, 0.049, 0.0453], "linear"), ([80, 1000, 20000], "log"),
                                           ([0.0, 5.0], "linear"), ([3.0, 29.0], "linear"), ([3.0, 30.0], "log")])
def test_log_only_where_the_data_span_a_decade(values, scale):
    plt = plots._plt()
    fig, ax = plt.subplots()
    ax.plot(values, values, "o")
    assert plots.set_scale(ax, "x", values) == scale and ax.get_xscale() == scale
    r = _render(fig)
    boxes = _tick_boxes(ax, "x", r)
    assert 2 <= len(boxes) <= plots.MAX_TICKS + 2 and _no_overlap(boxes)
    plt.close(fig)


def _capture(monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, name, exts=("png",): figs.append(fig) or [name])
    return figs


def nine_head_points():
    rng = np.random.default_rng(0)
    heads = ["gap", "gmp", "avgmax", "csra", "attnpool", "txdec(embed=128, ffn=512, heads=4)",
             "mldecoder(embed=128, ffn=512, heads=4)", "q2l", "mldecoder(groups=20)"]
    return [dict(backbone=bb, head=h, img_size=224, dataset="scenes", metric="map", acc=30 + 5 * rng.random(),
                 std=rng.random(), n=3, gmacs=g + 0.3 * i * rng.random(), throughput=100 / (g + 0.1 * i))
            for i, h in enumerate(heads) for bb, g in (("resnet50", 4.1), ("tresnet_l", 10.9))]


def test_a_nine_head_pareto_plot_keeps_names_in_a_legend_outside_the_axes(monkeypatch):
    figs = _capture(monkeypatch)
    plots.plot_pareto(nine_head_points(), "gmacs", "unused", "p", "t")
    fig = figs[0]
    ax = fig.axes[0]
    r = _render(fig)
    box = ax.get_window_extent(r)
    legend = ax.get_legend().get_window_extent(r)
    assert legend.x0 >= box.x1  # beside the axes: covers no point
    assert len(ax.get_legend().get_texts()) == 18 + 1  # every (backbone, head) and the front
    assert not ax.texts  # no free labels that could run past the axes or over each other
    assert ax.get_xscale() == "linear"  # 4 to 12 GMACs: not a decade
    for axis in ("x", "y"):
        assert _no_overlap(_tick_boxes(ax, axis, r))
    plots._plt().close(fig)


def test_share_bars_are_horizontal_with_labels_inside_the_axes(monkeypatch):
    import pandas as pd

    figs = _capture(monkeypatch)
    rows = [dict(backbone="tresnet_m", head=h, img_size=224, num_classes=n, gmacs_total=5.7 + g,
                 gmacs_backbone=5.7, gmacs_head=g) for n in (80, 20000) for h, g in (("gap", 0.001), ("txdec", 750))]
    plots.plot_head_share(pd.DataFrame(rows), "unused")
    fig = figs[0]
    ax = fig.axes[0]
    r = _render(fig)
    box = ax.get_window_extent(r)
    for t in ax.texts:  # the share labels
        e = t.get_window_extent(r)
        assert box.x0 <= e.x0 and e.x1 <= box.x1
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "tresnet_m N=20000 + txdec" in labels  # N varies, so it is named; the size does not
    assert _no_overlap(_tick_boxes(ax, "y", r))
    plots._plt().close(fig)
