"""The project's own regression check: a small `bench run` (4 seeds) checked by `bench check` against the committed
baseline results/baselines/ci.csv, which knows its noise (each accuracy metric's mean over the seeds, the seeds'
spread and the spread a rerun of one seed shows across thread counts), and proof that the check still catches what
it must: a 1-point mAP drop and a head with zeroed attention are flagged, a rerun is not.

To regenerate the baseline after an intended change (say why in the commit): run the CI configuration at 1 and
at 2 threads and make the baseline from both, so that it holds the floating-point spread between them:
    ARGS=$(cd tests && python -c "from test_ci_baseline import CI_ARGS; import shlex; print(shlex.join(CI_ARGS))")
    eval bench run $ARGS --threads 1 --results-dir /tmp/ci1 && eval bench run $ARGS --threads 2 --results-dir /tmp/ci2
    bench baseline /tmp/ci1/*.csv /tmp/ci2/*.csv --out results/baselines/ci.csv --metrics map,map_ema
"""
import glob
import os

import pandas as pd
import pytest

from bench.cli import main
from test_cli import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(ROOT, "results", "baselines", "ci.csv")
MLDECODER = "mldecoder(embed=32, ffn=64, heads=4)"
# An easy scenes task (8 classes, at most 2 objects, plain backgrounds) that a tiny model learns in seconds, well
# above chance (mAP about 60 against 25), so that a broken head shows as a clear drop; 4 seeds, so that the mean
# is compared within its measured spread.
CI_ARGS = ["--backbone", "test_resnet", "--heads", f"gap,{MLDECODER}",
           "--dataset", "scenes(classes=8, train_size=1024, val_size=256, max_objects=2, distractors=False)",
           "--img-size", "32", "--epochs", "8", "--lr", "0.003", "--seeds", "0,1,2,3", "--workers", "0",
           "--no-timing", "--no-plot"]

pytestmark = pytest.mark.slow


def bench(argv, capsys):
    """`bench ARGV` -> (exit code, stdout and stderr together)."""
    code, out, err = run_cli(argv, capsys)
    return code, out + err


def run_ci(tmp_path, capsys, args=CI_ARGS) -> str:
    code, out = bench(["run", *args, "--results-dir", str(tmp_path)], capsys)
    assert code == 0, out
    return glob.glob(str(tmp_path / "*.csv"))[0]


@pytest.fixture(scope="module")
def ci_result(tmp_path_factory):
    """One run of the CI configuration, shared by the checks below."""
    path = tmp_path_factory.mktemp("ci")
    try:
        main(["run", *CI_ARGS, "--results-dir", str(path)])
    except SystemExit as e:
        stopped = " (stopped by SIGINT/SIGTERM from outside the test, e.g. a time limit)" if e.code in (130, 143) else ""
        assert not e.code, f"bench run exited {e.code}{stopped}"
    return glob.glob(str(path / "*.csv"))[0]


def _compared(out: str, metric: str):
    return [l for l in out.splitlines() if f" {metric} " in f" {l} " and ("gap" in l or "mldecoder" in l)]


def test_the_committed_baseline_knows_its_noise():
    base = pd.read_csv(BASELINE)
    acc = base[base["seeds"].notna()]
    assert len(acc) == 2 and set(acc["seeds"]) == {"0,1,2,3"}
    for m in ("map", "map_ema"):
        assert (acc[f"{m}_std"] > 0).all() and (acc[f"{m}_rerun_std"] > 0).all()
        assert (acc[f"{m}_rerun_std"] < acc[f"{m}_std"]).all()  # a rerun of a seed moves less than a new seed
        assert (3 * acc[f"{m}_rerun_std"] / 2 < 1.0).all()  # the paired tolerance over 4 seeds is under a point
    assert set(str(base["threads"].iloc[0]).split(";")) == {"1", "2"}  # made at both thread counts
    cost = base[base["seeds"].isna()]
    assert len(cost) == 2 and cost["params_head"].notna().all() and cost["gmacs_head"].notna().all()


def test_ci_run_matches_the_committed_baseline(ci_result, capsys):
    code, out = bench(["check", "--baseline", BASELINE, "--results", ci_result], capsys)
    assert code == 0, out
    assert "worse" not in out and "changed" not in out and "missing" not in out
    assert "paired over 4 seeds" in out
    assert len(_compared(out, "map")) == 2 and all("within noise" in l or "better" in l
                                                   for l in _compared(out, "map"))


def test_a_rerun_with_the_same_seeds_is_not_flagged(ci_result, tmp_path, capsys):
    """A rerun on the same machine at the same threads gives the same rows. Shown on seed 0 (each seed's cells
    seed themselves and depend on no other seed), so a whole rerun is the first run, which the check passes."""
    args = list(CI_ARGS)
    args[args.index("--seeds") + 1] = "0"
    again = run_ci(tmp_path, capsys, args)
    key = ["head", "seed"]
    a = pd.read_csv(ci_result).dropna(subset=["map"]).query("seed == 0").sort_values(key)
    b = pd.read_csv(again).dropna(subset=["map"]).sort_values(key)
    assert len(b) == 2 and list(a["head"]) == list(b["head"])
    for m in ("map", "map_ema"):
        assert abs(a[m].to_numpy() - b[m].to_numpy()).max() < 1e-3, m  # same machine, same threads
    merged = pd.concat([pd.read_csv(ci_result), pd.read_csv(again)])  # the rerun's rows are the latest of seed 0
    path = tmp_path / "with_rerun.csv"
    merged.to_csv(path, index=False)
    code, out = bench(["check", "--baseline", BASELINE, "--results", str(path)], capsys)
    assert code == 0, out


def test_a_one_point_map_drop_is_a_regression(ci_result, tmp_path, capsys):
    """At the committed baseline's tolerances, centred on this machine's own means (so the test does not depend
    on how far this CPU's floating-point path falls from the baseline's), a 1-point drop is flagged."""
    base = pd.read_csv(BASELINE)
    res = pd.read_csv(ci_result)
    for i, r in base[base["seeds"].notna()].iterrows():
        rows = res[(res["head"] == r["head"]) & res["map"].notna()]
        for m in ("map", "map_ema"):
            base.loc[i, m] = rows[m].mean()
    centred = tmp_path / "centred.csv"
    base.to_csv(centred, index=False)
    assert bench(["check", "--baseline", str(centred), "--results", ci_result], capsys)[0] == 0
    res.loc[res["map"].notna(), "map"] -= 1.0
    worse = tmp_path / "worse.csv"
    res.to_csv(worse, index=False)
    code, out = bench(["check", "--baseline", str(centred), "--results", str(worse)], capsys)
    assert code == 1 and "REGRESSION" in out
    assert len(_compared(out, "map")) == 2 and all("worse" in l for l in _compared(out, "map")), out


def test_a_broken_head_is_caught(tmp_path, capsys, monkeypatch):
    """Zero ML-Decoder's attention output: the head still runs and trains, but its accuracy falls."""
    import torch

    from bench.heads import _decoder

    monkeypatch.setattr(_decoder.Attention, "forward",
                        lambda self, q, kv, *a, **k: torch.zeros(kv.shape[0], q.shape[1], self.embed, dtype=kv.dtype))
    args = list(CI_ARGS)
    args[args.index("--heads") + 1] = MLDECODER  # the broken head alone: GAP does not use the attention
    args[args.index("--seeds") + 1] = "0,1"  # two of the baseline's seeds: unpaired, still far outside
    broken = run_ci(tmp_path, capsys, args)
    code, out = bench(["check", "--baseline", BASELINE, "--results", broken, "--allow-missing"], capsys)
    assert code == 1, out
    rows = [l for l in _compared(out, "map") if "mldecoder" in l]
    assert rows and all("worse" in l for l in rows), out
