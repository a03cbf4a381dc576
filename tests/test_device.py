"""``--device auto`` (the default of bench run, bench study and bench.train.distributed): CUDA when torch sees one, else
the CPU, resolved once. CUDA is faked here (torch.cuda.is_available patched): no test needs a GPU."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from bench.run.config import build_config
from bench.run.runner import resolve_device
from bench.train.training import TrainConfig


@pytest.mark.parametrize("available, expected", [(True, "cuda"), (False, "cpu")])
def test_auto_is_cuda_when_available_else_cpu(monkeypatch, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto") == expected
    assert build_config(cost_only=True).device == expected  # the default, resolved in the config itself
    assert TrainConfig().resolved_device().type == expected  # bench.train.distributed's default goes through this
    assert resolve_device("cpu") == "cpu"


def test_an_explicit_cuda_without_one_fails_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is available here"):
        build_config(device="cuda", cost_only=True)
    with pytest.raises(ValueError, match="valid: auto, cpu, cuda, cuda:N"):
        build_config(device="tpu", cost_only=True)


def test_the_commands_default_to_auto():
    from bench.cli import cli
    from bench.train.distributed import main  # noqa: F401 (its click options are built in main)

    runner = CliRunner()
    for args in (["run", "--help"], ["study", "classes", "--help"]):
        out = runner.invoke(cli, args).output
        assert "auto (CUDA when available, else the CPU)" in out or "default: auto" in out.replace("\n", " "), args
    import inspect

    import bench.train.distributed as d

    assert 'default="auto"' in inspect.getsource(d.main)


def test_the_header_and_rows_name_the_resolved_device(monkeypatch, tmp_path, capsys):
    from bench.cli import main
    from bench.run.results import read_results

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    main(["run", "--cost-only", "--no-timing", "--heads", "gap", "--backbone", "test_resnet", "--img-size",
          "32", "--results-dir", str(tmp_path), "--no-plot"])
    assert "  device     cpu (auto: no CUDA device here)" in capsys.readouterr().out
    df = read_results([str(p) for p in tmp_path.glob("*.csv")])
    assert set(df["device"]) == {"cpu"}
