"""The run configuration (bench.run.config): building a RunConfig does no I/O and it cannot be changed in place;
resolve_config decides every default from what a user gave (device, dataset, cost-only or training, the CPU
training run); a head spec is parsed once into a HeadSpec carrying its canonical label; the commands take one
options value."""
from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch

import bench.run.config as config
import bench.heads as heads
from bench.run.config import CPU_SMALL, RunConfig, RunOptions, build_config, resolve_config
from bench.run.defaults import DATASET_DEFAULTS, GENERIC, dataset_defaults
from bench.heads import HeadSpec, create_head, parse_head


def _fields(**over):
    """Every field of a resolved RunConfig (a cost-only run on the CPU), with ``over`` replacing some."""
    base = dict(heads=["gap"], backbones=["test_resnet"], img_size=32, num_classes=7, batch_sizes=[1], device="cpu",
                dtype="fp32", channels_last=False, compile=False, cost_only=True, timing=False, latency=True,
                memory=False, train_timing=False, min_time_s=0.1, dataset="scenes", data_root=None,
                protocol="finetune", epochs=1, seeds=[0], lr=None, train_batch_size=8, workers=0, pretrained=False,
                checkpoint=None, cache_dir=None, results_dir="unused", run_id="r", threads=1, knn=0)
    return {**base, **over}


def test_building_a_config_does_no_io_and_it_is_frozen(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: pytest.fail("probed the device"))
    monkeypatch.setattr(config, "dataset_num_classes", lambda *a: pytest.fail("looked up the dataset"))
    cfg = RunConfig(**_fields(dataset="scenes(classes=6)", cost_only=False))
    assert cfg.num_classes == 7  # as given: the dataset's N is resolve_config's to look up
    assert cfg.dataset == "scenes(classes=6)" and isinstance(cfg.heads[0], HeadSpec)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.device = "cuda"
    gpu = dataclasses.replace(cfg, device="cuda:1")  # a derived configuration; no GPU needed to build it
    assert gpu.device == "cuda:1" and cfg.device == "cpu"
    with pytest.raises(ValueError, match="valid: auto, cpu, cuda, cuda:N"):
        RunConfig(**_fields(device="auto"))  # "auto" is resolved before a configuration is built


@pytest.mark.parametrize("bad, message", [
    (dict(dtype="fp8"), "unknown dtype 'fp8'; valid: fp32, fp16, bf16"),
    (dict(protocol="linear"), "unknown protocol 'linear'"),
    (dict(threads=0), "threads must be a whole number >= 1"),
    (dict(batch_sizes=[0]), "batch sizes must be >= 1"),
    (dict(knn=3), "needs --protocol probe"),
    (dict(img_size=4), "img_size must be >= 8"),
    (dict(heads=["gap", "mldecodr"]), "unknown head 'mldecodr'"),
    (dict(run_id=""), "run_id is empty"),
])
def test_a_config_checks_its_values(bad, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**_fields(**bad))


def test_the_cpu_training_run_defaults(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = resolve_config(RunOptions(results_dir=str(tmp_path)))
    assert cfg.device == "cpu" and cfg.backbones == ["tf_efficientnet_lite0"] and cfg.pretrained
    assert cfg.protocol == "probe" and cfg.img_size == 128 and cfg.epochs == DATASET_DEFAULTS["scenes"]["epochs"]
    assert cfg.heads == ["gap", f"txdec({CPU_SMALL})", f"mldecoder({CPU_SMALL})"]
    assert cfg.seeds == [0, 1, 2] and cfg.batch_sizes == [1, 32] and cfg.workers == 0
    assert not cfg.memory and not cfg.train_timing and cfg.timing  # a training run's question is accuracy
    assert cfg.num_classes == config.dataset_classes("scenes") != 80  # the dataset's
    assert cfg.threads == config.default_threads() and cfg.run_id and cfg.results_dir == str(tmp_path)


def test_cost_gpu_and_dataset_defaults(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # faked: nothing runs on it here
    cost = build_config(cost_only=True)
    assert cost.device == "cuda" and cost.backbones == ["resnet50"] and cost.heads == ["gap", "txdec", "mldecoder"]
    assert cost.img_size == 224 and cost.num_classes == 80 and cost.memory and cost.train_timing
    assert not cost.pretrained and cost.protocol == "finetune"
    train = build_config(dataset="fashion-mnist")
    assert train.backbones == ["resnet50"] and train.heads == ["gap", "txdec", "mldecoder"]
    assert (train.img_size, train.epochs, train.workers) == (DATASET_DEFAULTS["fashion-mnist"]["img_size"],
                                                             DATASET_DEFAULTS["fashion-mnist"]["epochs"], 2)
    assert train.num_classes == 10 and not train.memory
    assert dataset_defaults("a-dataset-with-no-defaults") == GENERIC == dict(img_size=224, epochs=10, workers=2)
    timed = build_config(timing=True, backbones=["test_resnet"])  # a study that times its training runs
    assert timed.memory and timed.train_timing and not timed.pretrained and timed.protocol == "finetune"


def test_an_explicit_cuda_without_one_fails_in_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is available here"):
        build_config(device="cuda", cost_only=True)


def test_a_head_spec_is_parsed_once(monkeypatch):
    spec = parse_head("mldecoder(queries='learnable', groups=100, embed=64)")
    assert spec == "mldecoder(embed=64, queries=\"learnable\")"  # the canonical label: defaults dropped, sorted
    assert spec.name == "mldecoder" and spec.options == {"embed": 64, "queries": "learnable"}
    assert parse_head(spec) is spec
    for copied in (pickle.loads(pickle.dumps(spec)), copy.deepcopy(spec)):  # Ray tasks, dataclasses.asdict
        assert copied == spec and isinstance(copied, HeadSpec) and copied.options == spec.options
    monkeypatch.setattr(heads, "parse_spec", lambda text: pytest.fail(f"parsed {text!r} again"))
    cfg = RunConfig(**_fields(heads=[spec]))
    assert cfg.heads[0] is spec
    head = create_head(cfg.heads[0], 64, 5)
    assert head.spec == spec and head.num_classes == 5


def test_the_commands_take_one_options_value(monkeypatch, tmp_path):
    from bench import cli, commands

    seen = []  # the CLI imports the commands where they run (start-up time): patch them in their module
    monkeypatch.setattr(commands, "run_command", seen.append)
    monkeypatch.setattr(commands, "study_command", lambda name, options: seen.append((name, options)))
    cli.main(["run", "--heads", "gap,csra", "--batch-sizes", "2", "--no-timing", "--results-dir", str(tmp_path)])
    cli.main(["study", "compute", "--backbone", "resnet10t", "--seeds", ""])
    run, (name, study) = seen
    assert isinstance(run, RunOptions) and run.heads == ["gap", "csra"] and run.batch_sizes == [2]
    assert run.timing is False and run.device == "auto" and run.num_classes == 80 and run.backbones is None
    assert name == "compute" and study.given() == dict(backbones=["resnet10t"], results_dir="results/runs")


def test_a_study_resolves_through_the_same_function():
    from bench.studies import get_study

    (cfg,) = get_study("backbone-vs-head").configs()
    assert cfg.memory and cfg.train_timing  # it times its training runs: memory as well, as it always did
    for cfg in get_study("compute").configs():
        assert cfg.num_classes == 80 and cfg.img_size in (224, 448, 640) and cfg.run_id == "study-compute"


def test_a_run_parses_each_head_spec_once(monkeypatch, tmp_path, capsys):
    from bench.cli import main

    real, parsed = heads.parse_spec, []
    monkeypatch.setattr(heads, "parse_spec", lambda text: parsed.append(text) or real(text))
    main(["run", "--heads", "gap,mldecoder(embed=64, groups=20)", "--backbone", "test_resnet", "--img-size", "32",
          "--cost-only", "--no-timing", "--results-dir", str(tmp_path), "--no-plot"])
    assert "mldecoder(embed=64, groups=20)" in capsys.readouterr().out  # the summary names it by its label
    assert sorted(parsed) == ["gap", "mldecoder(embed=64, groups=20)"]  # validation and the cell built from them


def test_an_empty_list_option_of_bench_run_is_given_as_empty():
    with pytest.raises(ValueError, match="--batch-sizes is empty"):  # as before: not silently the default
        RunOptions.from_cli(batch_sizes="")
    assert RunOptions.from_cli(heads="").heads == [] and RunOptions.from_cli().heads is None
