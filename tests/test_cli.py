"""The `bench` command line: outputs, result files and one-line errors for user mistakes."""
import csv
import os

import pandas as pd
import pytest

from bench.cli import main
from bench.heads import list_heads
from bench.run.results import COLUMNS

TINY = ["--backbone", "test_resnet", "--img-size", "32", "--batch-sizes", "1,2", "--min-time", "0.01"]


def run_cli(argv, capsys):
    """Run `bench ARGV`; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def only_csv(folder):
    files = [f for f in os.listdir(folder) if f.endswith(".csv")]
    assert len(files) == 1, files
    return os.path.join(folder, files[0])


def test_heads_lists_every_head_with_cost(capsys):
    code, out, _ = run_cli(["heads", "--in-features", "2048", "--num-classes", "80"], capsys)
    assert code == 0
    for name in list_heads():
        assert f"\n{name} " in out
    # ML-Decoder at C=2048, N=80, 14x14: the paper's +0.9 GMACs head
    line = next(l for l in out.splitlines() if l.startswith("mldecoder "))
    assert "0.91" in line


def test_cost_only_run_writes_the_schema(tmp_path, capsys):
    code, out, err = run_cli(["run", "--heads", "gap,mldecoder(groups=20, embed=64)", *TINY, "--cost-only",
                              "--no-memory", "--results-dir", str(tmp_path), "--no-plot"], capsys)
    assert code == 0, err
    path = only_csv(tmp_path)
    with open(path) as f:
        header = next(csv.reader(f))
    assert header == COLUMNS
    df = pd.read_csv(path)
    assert sorted(df["head"].unique()) == ["gap", "mldecoder(embed=64, groups=20)"]  # the canonical label
    assert sorted(df["batch_size"].unique()) == [1, 2]
    assert (df["status"] == "ok").all()
    assert (df["gmacs_total"] - df["gmacs_backbone"] - df["gmacs_head"]).abs().max() < 1e-6
    assert (df["latency_ms_p50"] > 0).all() and (df["latency_n"] >= 5).all()
    assert "summary" not in err
    assert "gap" in out and "head GMACs" in out  # the summary table
    # bench results reads it back; the timm export has timm's columns
    code, out, _ = run_cli(["results", "--results-dir", str(tmp_path)], capsys)
    assert code == 0 and "mldecoder(embed=64, groups=20)" in out
    timm_csv = tmp_path / "timm.csv"
    code, _, _ = run_cli(["results", str(path), "--export-timm", str(timm_csv)], capsys)
    assert code == 0
    assert list(pd.read_csv(timm_csv).columns) == ["model", "infer_samples_per_sec", "infer_step_time",
                                                   "infer_batch_size", "infer_img_size", "infer_gmacs",
                                                   "param_count", "train_samples_per_sec", "train_step_time",
                                                   "train_batch_size", "train_img_size"]
    timm_df = pd.read_csv(timm_csv)  # batch norm cannot train on one 1x1 map: at batch 1 the step is an error
    assert (timm_df.loc[timm_df["infer_batch_size"] == 2, "train_step_time"] > 0).all()


def test_resume_runs_only_missing_cells(tmp_path, capsys):
    args = ["run", "--heads", "gap", *TINY, "--no-timing", "--cost-only", "--results-dir", str(tmp_path),
            "--no-plot"]
    assert run_cli(args, capsys)[0] == 0
    path = only_csv(tmp_path)
    run_id = os.path.basename(path)[:-4]
    code, out, _ = run_cli(args + ["--resume", run_id], capsys)
    assert code == 0 and "Nothing to run" in out
    assert len(pd.read_csv(path)) == 1


@pytest.mark.parametrize("argv, expected", [
    (["--heads", "gap,mldecodr"], "unknown head 'mldecodr'; did you mean 'mldecoder'"),
    (["--heads", "mldecoder(grups=3)"], "unknown option of head 'mldecoder' 'grups'; did you mean 'groups'"),
    (["--heads", "mldecoder(queries=banana)"], "unknown queries 'banana'; valid: fixed, learnable, word"),
    (["--backbone", "resnet5O"], "unknown backbone 'resnet5O'; did you mean"),
    (["--device", "cuda"], "no CUDA device is available"),
    (["--batch-sizes", "1,x"], "--batch-sizes must be comma-separated integers"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, expected):
    base = ["run", "--cost-only", "--no-timing", "--results-dir", str(tmp_path), "--no-plot"]
    if "--backbone" not in argv:
        base += ["--backbone", "test_resnet", "--img-size", "32"]
    if "--heads" not in argv:
        base += ["--heads", "gap"]
    code, out, err = run_cli(base + argv, capsys)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_resolution_the_backbone_cannot_take(tmp_path, capsys):
    code, _, err = run_cli(["run", "--heads", "gap", "--backbone", "tresnet_m", "--img-size", "30",
                            "--cost-only", "--no-timing", "--results-dir", str(tmp_path), "--no-plot"], capsys)
    assert code == 2 and "cannot take img_size 30" in err and "Traceback" not in err


def test_unwritable_results_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(["run", "--heads", "gap", "--backbone", "test_resnet", "--img-size", "32",
                            "--cost-only", "--no-timing", "--results-dir", str(blocker / "runs"), "--no-plot"],
                           capsys)
    assert code == 2 and "cannot write results" in err


def test_run_help_names_the_real_per_dataset_defaults(capsys):
    import re

    from bench.run.defaults import DATASET_DEFAULTS as D

    code, out, _ = run_cli(["run", "--help"], capsys)
    text = re.sub(r"-\s+", "-", " ".join(out.split()))  # unwrapped (click breaks lines at spaces and hyphens)
    assert code == 0
    assert (f"Input resolution [default: 224 with --cost-only, else per dataset: {D['scenes']['img_size']} for "
            f"scenes, {D['fashion-mnist']['img_size']} for fashion-mnist, ") in text
    assert f"Training epochs [default: per dataset: {D['scenes']['epochs']} for scenes, " in text
    assert all(name in text for name in D)


def test_results_file_cut_mid_line_warns_and_shows_the_rest(tmp_path, capsys):
    from bench.run.results import ResultsWriter

    path = tmp_path / "run.csv"
    rows = [dict(run_id="run", backbone="test_resnet", head=h, img_size=32, batch_size=1, gmacs_head=0.5,
                 status="ok", timestamp="2025-01-01T10:00:00") for h in ("gap", "csra", "mldecoder")]
    with ResultsWriter(str(path)) as w:
        for r in rows:
            w.write(r)
    code, out, err = run_cli(["results", str(path)], capsys)
    assert code == 0 and err == "" and "mldecoder" in out  # a complete file: no warning
    text = path.read_text()
    path.write_text(text[:text.index("mldecoder") + 4])  # power loss while writing line 4 (the header is line 1)
    code, out, err = run_cli(["results", str(path)], capsys)
    assert code == 0 and "gap" in out and "csra" in out and "mldecoder" not in out and "mlde" not in out
    assert err.strip() == (f"warning: {path}: line 4 has 3 fields where the header has {len(COLUMNS)} (cut mid-line, "
                           "as by a crash or power loss): dropped")
    # a resumed run appends after the cut line, never onto it: its row is read, the cut one still dropped
    with ResultsWriter(str(path)) as w:
        w.write(dict(rows[2], head="txdec"))
    code, out, err = run_cli(["results", str(path)], capsys)
    assert code == 0 and "txdec" in out and "line 4 has 3 fields" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("under", ["", "features"])
def test_cache_dir_that_is_a_file_is_refused_before_any_cell(tmp_path, capsys, under):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    cache = blocker / under if under else blocker
    code, out, err = run_cli(["run", "--protocol", "probe", "--cache-dir", str(cache), "--heads", "gap",
                              "--backbone", "test_resnet", "--img-size", "32", "--epochs", "1", "--seeds", "0",
                              "--results-dir", str(tmp_path / "runs"), "--no-plot"], capsys)
    said = "is a file, not a folder" if not under else f"is under {str(blocker)!r}, a file, not a folder"
    assert code == 2 and err.strip() == f"error: --cache-dir {str(cache)!r} {said}"
    assert not (tmp_path / "runs").exists()  # refused before any cell ran or any row was written


def test_plot_cost_only(tmp_path, capsys):
    run_cli(["run", "--heads", "gap,csra", *TINY, "--no-timing", "--cost-only", "--results-dir",
             str(tmp_path / "runs"), "--no-plot"], capsys)
    code, out, _ = run_cli(["plot", "--results-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "plots")],
                           capsys)
    assert code == 0
    assert (tmp_path / "plots" / "cost_head_share.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "cost_head_share.svg").exists()


def test_a_killed_training_cell_resumes_from_its_checkpoint(tmp_path, capsys):
    """A run killed after a cell's training checkpointed but before its row was written: `--resume` continues
    from the checkpoint (here: nothing left to train) and gives the same result."""
    args = ["run", "--backbone", "test_resnet", "--heads", "gap", "--dataset", "scenes(train_size=128, val_size=64)",
            "--img-size", "32", "--epochs", "2", "--seeds", "0", "--no-timing", "--no-plot", "--workers", "0",
            "--results-dir", str(tmp_path)]
    assert run_cli(args, capsys)[0] == 0
    path = only_csv(tmp_path)
    full = pd.read_csv(path)
    done = full[full["seed"].notna()].iloc[0]
    assert list((tmp_path / "checkpoints").rglob("last.pt"))
    full[full["seed"].isna()].to_csv(path, index=False)  # the kill: the accuracy row never made it to the file
    code, out, err = run_cli(args + ["--resume", os.path.basename(path)[:-4]], capsys)
    assert code == 0, err
    again = pd.read_csv(path)
    redone = again[again["seed"].notna()].iloc[0]
    assert redone["map"] == pytest.approx(done["map"], abs=1e-6)
    assert redone["train_s"] == pytest.approx(done["train_s"], abs=0.05)  # no epoch was trained again


@pytest.mark.parametrize("argv, expected", [
    ([], dict(backbones=["tf_efficientnet_lite0"], pretrained=True, protocol="probe", img_size=128)),
    (["--no-pretrained"], dict(backbones=["tf_efficientnet_lite0"], pretrained=False, protocol="probe")),
    (["--protocol", "finetune"], dict(pretrained=True, protocol="finetune", img_size=128)),
    (["--backbone", "test_resnet"], dict(backbones=["test_resnet"], pretrained=False, protocol="finetune",
                                         img_size=64)),
    (["--backbone", "tf_efficientnet_lite1", "--pretrained"], dict(pretrained=True, protocol="finetune")),
])
def test_the_default_run_probes_a_pretrained_backbone(tmp_path, capsys, monkeypatch, argv, expected):
    """On a CPU with no --backbone, `bench run` probes ImageNet-pretrained EfficientNet-Lite0 at 128 px; options
    given keep their meaning (another backbone trains from scratch end to end unless told otherwise)."""
    from bench import commands

    seen = {}

    def header(cfg, *args, **kwargs):  # stop before any work: the configuration is what is tested
        seen["cfg"] = cfg
        raise SystemExit(0)
    monkeypatch.setattr(commands, "_print_header", header)
    code, _, err = run_cli(["run", "--device", "cpu", "--results-dir", str(tmp_path), *argv], capsys)
    assert code == 0, err
    for key, value in expected.items():
        assert getattr(seen["cfg"], key) == value, key
