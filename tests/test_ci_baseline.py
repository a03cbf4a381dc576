"""The project's own regression check: a small deterministic `bench run` checked by `bench check` against the
committed baseline results/baselines/ci.csv, and proof that the check catches what it must catch.

To regenerate the baseline after an intended change (say why in the commit):
    bench run $(python -c "from tests.test_ci_baseline import CI_ARGS; print(' '.join(CI_ARGS))") \
        --results-dir /tmp/ci && cp /tmp/ci/*.csv results/baselines/ci.csv
"""
import glob
import os

import pandas as pd
import pytest

from bench.cli import main
from test_cli import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(ROOT, "results", "baselines", "ci.csv")
# An easy scenes task (8 classes, at most 2 objects, plain backgrounds) that a tiny model learns in seconds, well
# above chance, so that a broken head shows as a clear drop.
CI_ARGS = ["--backbone", "test_resnet", "--heads", "gap,mldecoder(embed=32, ffn=64, heads=4)",
           "--dataset", "scenes(classes=8, train_size=512, val_size=128, max_objects=2, distractors=False)",
           "--img-size", "64", "--epochs", "4", "--lr", "0.003", "--seeds", "0", "--workers", "0", "--no-timing",
           "--no-plot"]

pytestmark = pytest.mark.slow


def bench(argv, capsys):
    """`bench ARGV` -> (exit code, stdout and stderr together)."""
    code, out, err = run_cli(argv, capsys)
    return code, out + err


def run_ci(tmp_path, capsys) -> str:
    code, out = bench(["run", *CI_ARGS, "--results-dir", str(tmp_path)], capsys)
    assert code == 0, out
    return glob.glob(str(tmp_path / "*.csv"))[0]


@pytest.fixture(scope="module")
def ci_result(tmp_path_factory):
    """One run of the CI configuration, shared by the checks below."""
    path = tmp_path_factory.mktemp("ci")
    main_args = ["run", *CI_ARGS, "--results-dir", str(path)]
    try:
        main(main_args)
    except SystemExit as e:
        assert not e.code
    return glob.glob(str(path / "*.csv"))[0]


def test_ci_run_matches_the_committed_baseline(ci_result, capsys):
    code, out = bench(["check", "--baseline", BASELINE, "--results", ci_result], capsys)
    assert code == 0, out
    assert "worse" not in out and "changed" not in out and "missing" not in out
    assert "within noise" in out


def test_a_rerun_with_the_same_seed_is_not_flagged(ci_result, tmp_path, capsys):
    again = run_ci(tmp_path, capsys)
    a, b = pd.read_csv(ci_result), pd.read_csv(again)
    assert (a["map"].fillna(-1) - b["map"].fillna(-1)).abs().max() < 1e-3  # deterministic on CPU
    code, out = bench(["check", "--baseline", ci_result, "--results", again], capsys)
    assert code == 0, out


def test_a_one_point_map_drop_is_a_regression(ci_result, tmp_path, capsys):
    df = pd.read_csv(ci_result)
    df.loc[df["map"].notna(), "map"] -= 1.0
    worse = tmp_path / "worse.csv"
    df.to_csv(worse, index=False)
    code, out = bench(["check", "--baseline", ci_result, "--results", str(worse)], capsys)
    assert code == 1
    assert out.count("worse") >= 2 and "REGRESSION" in out


def test_a_broken_head_is_caught(ci_result, tmp_path, capsys, monkeypatch):
    """Zero ML-Decoder's attention output: the head still runs and trains, but its accuracy falls."""
    import torch

    from bench.heads import _decoder

    monkeypatch.setattr(_decoder.Attention, "forward",
                        lambda self, q, kv: torch.zeros(kv.shape[0], q.shape[1], self.embed, dtype=kv.dtype))
    broken = run_ci(tmp_path, capsys)
    code, out = bench(["check", "--baseline", ci_result, "--results", broken], capsys)
    assert code == 1, out
    rows = [l for l in out.splitlines() if "mldecoder" in l and " map " in f" {l} "]
    assert any("worse" in l for l in rows), out
    assert not any("worse" in l for l in out.splitlines() if l.startswith("test_resnet  gap")), out
