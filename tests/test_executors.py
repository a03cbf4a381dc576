"""bench.run.executors.RayExecutor on a local 2-CPU Ray: the same rows as the local executor (cost columns equal,
timings aside), failed cells recorded while the others go on, reruns that run only the missing cells, and a study
through Ray. One Ray is started for the module; the tests are marked slow but run in the default suite."""
from __future__ import annotations

import dataclasses
import os
import sys

import pytest

from bench.run import executors
from bench.run.config import build_config
from bench.run.results import COST_COLUMNS, ENV_COLUMNS, KEY_COLUMNS, read_results
from bench.run.runner import LocalExecutor, execute_cell, plan_cells, run

TIMING_COLUMNS = ["latency_ms_p50", "latency_ms_iqr", "latency_n", "throughput_img_s", "backbone_ms_p50",
                  "backbone_ms_iqr", "head_ms_p50", "head_ms_iqr", "batch_size_requested"]
# Memory and the training step are measured like the timings (a process's peak RSS moves by a fraction of a MiB
# run to run): present on both sides, not equal.
TIMING_COLUMNS += [c for c in COST_COLUMNS if c.startswith(("mem_", "train_step")) or c in ("train_img_s",)]
EXACT_COST = [c for c in COST_COLUMNS if c not in TIMING_COLUMNS]


def test_missing_ray_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ValueError, match=r"pip install -e \.\[ray\]"):
        executors.RayExecutor()
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--executor", "ray", "--cost-only", "--no-timing", "--heads", "gap", "--backbone",
              "resnet10t", "--img-size", "32", "--results-dir", "/nonexistent-never-written", "--no-plot"])
    assert exit_info.value.code == 2
    assert "the ray executor needs Ray: pip install -e .[ray]" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e .[ray])")
    owner = executors.RayExecutor(num_cpus=2)
    owner.connect()
    yield owner
    owner.shutdown()


def _counted_run(cfg, executor):
    cells = []
    rows = run(cfg, executor=executor, on_cell=cells.append)
    return rows, cells


def _comparable(path):
    """Rows sorted by their identifiers, without run ids, environment and timings (which differ run to run)."""
    df = read_results([path])
    keep = [c for c in df.columns if c != "run_id" and c not in TIMING_COLUMNS
            and (c not in ENV_COLUMNS or c in ("status", "error"))]
    return df[keep].sort_values(KEY_COLUMNS).reset_index(drop=True)


@pytest.mark.slow
def test_ray_rows_equal_local_rows(ray_cluster, tmp_path):
    # memory=False: the peak-memory figures take a fresh process each (bench.measure.memory, tested in test_memory) and
    # would be most of this test's time; params, MACs, latency and the training step's time go through Ray here
    kw = dict(heads=["gap", "mldecoder(groups=20)"], backbones=["resnet10t", "resnet14t"], img_size=64,
              cost_only=True, batch_sizes=[1], min_time_s=0.01, results_dir=str(tmp_path), threads=1, memory=False)
    local = build_config(run_id="local", **kw)
    ray_cfg = build_config(run_id="ray", **kw)
    run(local, executor=LocalExecutor())
    rows, cells = _counted_run(ray_cfg, executors.RayExecutor())
    assert len(cells) == 2 and len(rows) == 2 * 2  # backbones x heads (x one batch size)

    a, b = _comparable(local.results_path), _comparable(ray_cfg.results_path)
    assert len(a) == 4 and (a["status"] == "ok").all() and (b["status"] == "ok").all()
    assert a[EXACT_COST].notna().all().sum() >= 10  # params and MACs are present, not NaN on both sides
    assert (a["gmacs_head"] > 0).all()
    import pandas as pd

    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    timed = read_results([ray_cfg.results_path])
    assert (timed["latency_ms_p50"] > 0).all() and (timed["throughput_img_s"] > 0).all()
    assert (timed["threads"] == 1).all()  # torch in each task uses the task's one CPU


@pytest.mark.slow
def test_failed_cells_are_recorded_and_a_rerun_runs_only_them(ray_cluster, tmp_path, monkeypatch):
    # Four cost cells, one per backbone:
    #   resnet10t    runs fine;
    #   resnet14t    raises RuntimeError inside the cell (execute_cell records it itself);
    #   regnetx_002  fails for real at run time: its 368 channels are not divisible by attnpool's 32 heads, a
    #                ValueError that crosses the process boundary as a RayTaskError;
    #   resnet18     kills its worker process (WorkerCrashedError, not retried with max_retries=0).
    cfg = build_config(heads=["gap", "attnpool(heads=32)"], backbones=["resnet10t", "resnet14t", "regnetx_002",
                                                                       "resnet18"],
                       img_size=64, cost_only=True, timing=False, results_dir=str(tmp_path), run_id="faulty")

    def flaky_task(cfg, cell):  # nested: Ray pickles it by value into the workers
        import bench.run.runner as runner

        if cell.backbone == "resnet18":
            os._exit(1)
        if cell.backbone != "resnet14t":
            return execute_cell(cfg, cell)

        def boom(*args, **kwargs):
            raise RuntimeError("injected failure")
            yield

        real = runner.run_cost_cell
        runner.run_cost_cell = boom
        try:
            return execute_cell(cfg, cell)
        finally:
            runner.run_cost_cell = real

    monkeypatch.setattr(executors, "_run_cell_task", flaky_task)
    rows, cells = _counted_run(cfg, executors.RayExecutor(max_retries=0))
    assert sorted(c.backbone for c in cells) == sorted(cfg.backbones)  # every cell came back
    df = read_results([cfg.results_path])
    assert len(df) == 4 * 2
    status = df.groupby("backbone")["status"].agg(lambda s: set(s))
    assert status["resnet10t"] == {"ok"}
    assert status["resnet14t"] == status["regnetx_002"] == status["resnet18"] == {"error"}
    errors = df[df.status == "error"].groupby("backbone")["error"].first()
    assert errors["resnet14t"].startswith("RuntimeError: injected failure")
    assert errors["regnetx_002"].startswith("ValueError: attnpool: in_features (368) must be divisible")
    assert "WorkerCrashedError" in errors["resnet18"] or "died" in errors["resnet18"]

    # The rerun of the same configuration runs only the three failed cells; two of them now succeed.
    monkeypatch.undo()
    rows, cells = _counted_run(cfg, executors.RayExecutor())
    assert sorted(c.backbone for c in cells) == ["regnetx_002", "resnet14t", "resnet18"]
    df = read_results([cfg.results_path])
    ok = df[df.status == "ok"]
    assert sorted(set(ok.backbone)) == ["resnet10t", "resnet14t", "resnet18"] and len(ok) == 6
    assert len(df) == 8 + 6  # appended, never overwritten
    # A third run retries only the cell that still fails.
    rows, cells = _counted_run(cfg, executors.RayExecutor())
    assert [c.backbone for c in cells] == ["regnetx_002"]


@pytest.mark.slow
def test_study_through_ray_equals_local_and_resumes(ray_cluster, tmp_path):
    from bench.studies import get_study

    study = get_study("compute")
    over = dict(backbones=["resnet10t"], timing=False)

    def run_study(results_dir, executor):
        configs = study.configs(results_dir=str(results_dir), **over)
        cells = []
        executors.run_many(configs, executor, on_cell=cells.append)
        return configs[0].results_path, cells

    local_path, local_cells = run_study(tmp_path / "local", LocalExecutor())
    ray_path, ray_cells = run_study(tmp_path / "ray", executors.RayExecutor())
    assert os.path.basename(ray_path) == "study-compute.csv"
    # 9 configurations (3 backbones x 3 sizes); with the backbone overridden only the 3 sizes are distinct, and
    # a cell shared by several configurations runs once
    assert len(local_cells) == len(ray_cells) == 3
    a, b = _comparable(local_path), _comparable(ray_path)
    assert sorted(a["img_size"].unique()) == [224, 448, 640] and (a["status"] == "ok").all() and len(a) == 9
    import pandas as pd

    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    # Rerunning the whole study through Ray runs nothing.
    assert run_study(tmp_path / "ray", executors.RayExecutor())[1] == []


def test_empty_map_starts_nothing(monkeypatch):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e .[ray])")
    ex = executors.RayExecutor()
    monkeypatch.setattr(ex, "connect", lambda: pytest.fail("connected for no cells"))
    assert list(ex.map(build_config(cost_only=True), [])) == []


@pytest.mark.slow
def test_cuda_run_needs_gpus_on_the_cluster(ray_cluster):
    import ray

    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray has GPUs: the request is satisfiable")
    # a configuration never probes the device when built: the driver need not have a GPU for this check
    cfg = dataclasses.replace(build_config(cost_only=True), device="cuda")
    with pytest.raises(ValueError, match="the Ray cluster has no GPU"):
        executors.RayExecutor().resources(cfg)
    cfg = dataclasses.replace(cfg, threads=1)
    assert executors.RayExecutor(gpus_per_cell=1).resources(cfg) == {"num_cpus": 1, "num_gpus": 1}
    two = build_config(cost_only=True, threads=2)
    assert executors.RayExecutor().resources(two) == {"num_cpus": 2, "num_gpus": 0}
    with pytest.raises(ValueError, match="give --threads 2 or fewer"):
        executors.RayExecutor().resources(build_config(cost_only=True, threads=3))
    with pytest.raises(ValueError, match="give --threads 1 instead"):
        executors.RayExecutor(cpus_per_cell=1).resources(build_config(cost_only=True, threads=2))


@pytest.mark.slow
def test_ray_accuracy_rows_equal_local_rows(ray_cluster, tmp_path):
    """Training cells through Ray give exactly the rows they give in-process at the same thread count (each Ray
    task asks for the run's threads and runs with them); every row records its threads."""
    kw = dict(heads=["gap", "mldecoder(embed=32, ffn=64, heads=4)"], backbones=["test_resnet"], img_size=32,
              dataset="scenes(train_size=256, val_size=64)", epochs=1, seeds=[0, 1], timing=False, workers=0,
              results_dir=str(tmp_path), threads=1)
    local = build_config(run_id="local", **kw)
    ray = build_config(run_id="ray", **kw)
    run(local, executor=LocalExecutor())
    run(ray, executor=ray_cluster)
    for cfg in (local, ray):
        assert (read_results([cfg.results_path])["threads"] == 1).all()
    a, b = _comparable(local.results_path), _comparable(ray.results_path)
    a, b = (df.drop(columns=["train_s"]) for df in (a, b))  # a duration, like the timings
    assert a["map"].notna().sum() == 4
    assert a.equals(b)


def test_cells_run_with_the_stated_threads_and_restore_the_callers(tmp_path):
    import torch

    before = torch.get_num_threads()
    seen = []
    cfg = build_config(heads=["gap"], backbones=["resnet10t"], img_size=32, cost_only=True, timing=False,
                       results_dir=str(tmp_path), threads=1)
    rows = execute_cell(cfg, plan_cells(cfg)[0], progress=lambda m: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {1} and rows[0]["threads"] == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        build_config(cost_only=True, threads=0)
