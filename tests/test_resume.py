"""Resuming is exact: a finished cell is never run again, a results file never holds two ok rows with one key, a
run stopped by SIGTERM keeps every finished row and says how to continue, and bad --resume/--checkpoint values
are one clear line."""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bench.run.results import DuplicateRowError, ResultsWriter, row_key
from test_cli import only_csv, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["--backbone", "test_resnet", "--heads", "gap,csra", "--dataset", "scenes(train_size=128, val_size=64)",
         "--img-size", "32", "--epochs", "2", "--no-timing", "--no-plot", "--workers", "0", "--threads", "1"]


def _accuracy_rows(path):
    df = pd.read_csv(path)
    return df[df["seed"].notna()]


def test_the_writer_refuses_a_second_ok_row_with_the_same_key(tmp_path):
    path = str(tmp_path / "r.csv")
    row = dict(run_id="r", backbone="b", head="gap", img_size=32, num_classes=5, dataset="scenes", seed=0,
               status="ok", map=50.0)
    with ResultsWriter(path) as w:
        w.write(row)
        w.write({**row, "status": "error", "map": ""})  # error rows may repeat
        with pytest.raises(DuplicateRowError, match="already holds an ok row for backbone=b, head=gap"):
            w.write({**row, "img_size": 32.0, "map": 51.0})  # the same key, however it is written
        w.write({**row, "seed": 1})
    with ResultsWriter(path) as w:  # a new writer on the same file knows its rows
        assert w.holds(row)
        with pytest.raises(DuplicateRowError):
            w.write(row)
    df = pd.read_csv(path)
    assert len(df) == 3 and len({row_key(r) for r in df[df["status"] == "ok"].to_dict("records")}) == 2


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_resumes_without_doubling_a_row(tmp_path):
    """SIGTERM after the first accuracy row: the process ends with 143 and prints the command that resumes it;
    that command runs only what is missing, and every (head, seed) has exactly one ok row."""
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    # Cells of a few seconds each, so that the stop lands mid-run: with TRAIN's tiny cells the run could reach
    # its end between the first row showing and the signal (it then exited 0; seen once in a fresh-clone suite).
    slower = [("scenes(train_size=512, val_size=64)" if a.startswith("scenes(") else a) for a in TRAIN]
    argv = ["run", *slower, "--seeds", "0,1", "--results-dir", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    path = None
    while time.time() < deadline and proc.poll() is None:
        files = [f for f in os.listdir(tmp_path) if f.endswith(".csv")]
        if files:
            path = os.path.join(tmp_path, files[0])
            if len(_accuracy_rows(path)) >= 1:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be stopped: " + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    run_id = os.path.basename(path)[:-4]
    assert "stopped by SIGTERM" in err and f"--resume {run_id}" in err
    hint = err.split("continue with")[1].strip().splitlines()[0]
    assert hint.startswith("bench run ") and "--seeds 0,1" in hint
    before = _accuracy_rows(path)
    assert 1 <= len(before) < 4

    import shlex

    resumed = subprocess.run([sys.executable, "-m", "bench", *shlex.split(hint)[1:]], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    done = len(before) + 1  # the accuracy cells finished before the stop, plus the cost cell
    assert f"{4 - len(before)} to run ({done} already done)" in resumed.stdout
    rows = pd.read_csv(path)
    ok = rows[rows["status"] == "ok"]
    keys = [row_key(r) for r in ok.to_dict("records")]
    assert len(keys) == len(set(keys))
    acc = ok[ok["seed"].notna()]
    assert sorted(zip(acc["head"], acc["seed"])) == [("csra", 0), ("csra", 1), ("gap", 0), ("gap", 1)]
    assert "(n=2)" in resumed.stdout  # the summary counts two seeds, not three
    again = subprocess.run([sys.executable, "-m", "bench", *shlex.split(hint)[1:]], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Nothing to run" in again.stdout
    assert len(pd.read_csv(path)) == len(rows)


@pytest.mark.slow
def test_finished_accuracy_cells_are_recognised_as_done(tmp_path, capsys):
    args = ["run", *TRAIN, "--seeds", "0", "--results-dir", str(tmp_path)]
    assert run_cli(args, capsys)[0] == 0
    path = only_csv(tmp_path)
    code, out, err = run_cli(args + ["--resume", "last"], capsys)
    assert code == 0, err
    assert "Nothing to run" in out and "0 to run (3 already done)" in out  # 1 cost cell, 2 accuracy cells
    assert len(pd.read_csv(path)) == 4  # 2 cost rows + 2 accuracy rows, once each


def test_the_summary_counts_each_seed_once(tmp_path):
    from bench.commands import summary_text

    rows = [dict(backbone="b", head="gap", seed=s, dataset="d", protocol="finetune", epochs=1, img_size=32,
                 num_classes=3, status="ok", map=m) for s, m in ((0, 10.0), (1, 20.0), (1, 20.0))]
    from bench.run.results import COLUMNS

    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    text = summary_text(df)
    assert "map (n=2)" in text and "15.0 ± 7.1" in text


def test_resume_of_an_unknown_run_lists_the_latest(tmp_path, capsys):
    (tmp_path / "20260101-000000-aaaaaa.csv").write_text("run_id\n")
    code, _, err = run_cli(["run", "--cost-only", "--no-timing", "--heads", "gap", "--backbone", "test_resnet",
                            "--img-size", "32", "--results-dir", str(tmp_path), "--resume", "no-such-run"], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--resume 'no-such-run': no such run" in err and "20260101-000000-aaaaaa" in err
    assert not (tmp_path / "no-such-run.csv").exists()


@pytest.mark.parametrize("mode", [["--cost-only"], ["--cost-only", "--no-timing"], ["--seeds", "0"]])
def test_a_missing_or_unreadable_checkpoint_is_one_line_in_every_mode(tmp_path, capsys, mode):
    base = ["run", "--heads", "gap", "--backbone", "test_resnet", "--img-size", "32", "--no-plot", "--no-timing",
            "--results-dir", str(tmp_path / "runs"), *mode]
    code, _, err = run_cli(base + ["--checkpoint", str(tmp_path / "nope.pth")], capsys)
    assert code == 2 and "nope.pth' does not exist; expected a file written by torch.save" in err
    assert len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage")
    code, _, err = run_cli(base + ["--checkpoint", str(bad)], capsys)
    assert code == 2 and "bad.pth' is not a PyTorch checkpoint" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not os.listdir(tmp_path / "runs")


def test_a_stop_signal_waits_until_a_checkpoint_is_written(tmp_path):
    """SIGTERM during torch.save (the per-epoch checkpoint) is held until the file is complete, then raised as
    Interrupted, not turned into torch's RuntimeError (which would record the cell as failed)."""
    import torch

    from bench.train.features import _atomic_save
    from bench.run.interrupt import Interrupted, handle_signals

    class Slow:  # pickled by torch.save: the signal arrives mid-write
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            return (dict, ())

    path = tmp_path / "ckpt.pt"
    with handle_signals():
        with pytest.raises(Interrupted) as stop:
            _atomic_save({"w": torch.zeros(3), "slow": Slow()}, str(path))
    assert stop.value.exit_code == 143
    assert set(torch.load(path, weights_only=False)) == {"w", "slow"}  # the file is whole


def test_a_counting_cost_cell_runs_only_its_missing_heads(tmp_path):
    """A cost cell that only counts (params, MACs) gains a head (a study's grid grew): only that head is counted;
    a timed cost cell runs whole, its heads timed together."""
    from bench.run import runner
    from bench.run.config import build_config

    cfg = build_config(backbones=["test_resnet"], heads=["gap", "gmp"], img_size=32, cost_only=True,
                       timing=False, num_classes=8, results_dir=str(tmp_path), run_id="grow", threads=1)
    runner.run(dataclasses.replace(cfg, heads=["gap"]))
    (cell,) = runner.pending_cells(cfg, runner.plan_cells(cfg))
    assert cell.kind == "cost" and cell.heads == ["gmp"]
    timed = dataclasses.replace(cfg, timing=True, batch_sizes=[1])
    assert [c.heads for c in runner.pending_cells(timed, runner.plan_cells(timed))] == [["gap", "gmp"]]
    runner.run(cfg)
    assert sorted(pd.read_csv(cfg.results_path)["head"]) == ["gap", "gmp"]  # each once
    assert runner.pending_cells(cfg, runner.plan_cells(cfg)) == []
