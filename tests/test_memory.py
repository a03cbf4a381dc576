"""Peak memory and the training step (bench.measure.memory), their columns in cost rows, and what reads them."""
import os

import pandas as pd
import pytest
import torch

from bench.measure import memory
from bench.measure.memory import (KnownAllocationRecipe, MemoryJob, PeakMemory, Step, StepOutOfMemory, make_targets,
                          measure_memory, measure_step)

MIB = 2 ** 20


# ------------------------------------------------------------------------------------ the method, on the CPU

@pytest.mark.parametrize("mode", ["infer", "train"])
def test_cpu_peak_matches_a_known_allocation(mode):
    """A forward that allocates and fills 128 MiB measures 128 MiB within 10%, in a fresh process."""
    peak = measure_memory(MemoryJob(KnownAllocationRecipe(128), mode, batch_size=8))
    assert abs(peak.peak_mib - 128) <= 0.1 * 128, peak
    assert peak.baseline_mib > 100  # the process's own RSS (torch) is held before the step, not counted in it


def test_cpu_training_peak_counts_gradients_and_adamw_state():
    """No buffer, one 32 MiB weight: inference holds almost nothing more; a training step adds the gradient and
    AdamW's two moment buffers (3 x 32 MiB) plus at most two weight-sized temporaries of the update."""
    recipe = KnownAllocationRecipe(0, in_features=2048, num_classes=4096)  # 2048 x 4096 fp32 weight = 32 MiB
    weight = 2048 * 4096 * 4 / MIB
    infer = measure_memory(MemoryJob(recipe, "infer", batch_size=8)).peak_mib
    train = measure_memory(MemoryJob(recipe, "train", batch_size=8)).peak_mib
    assert infer < 0.1 * weight, infer
    assert 0.9 * 3 * weight <= train <= 1.1 * 5 * weight, train


def test_cpu_step_that_does_not_fit_raises_out_of_memory():
    """The measuring process may grow by limit_mib only: a 2 GiB buffer under a 256 MiB limit is out of memory
    (reported as StepOutOfMemory, a MemoryError that the batch back-off understands)."""
    from bench.measure.timing import is_out_of_memory

    with pytest.raises(StepOutOfMemory, match="needs more than 256 MiB") as info:
        measure_memory(MemoryJob(KnownAllocationRecipe(2048), "infer", batch_size=2, limit_mib=256))
    assert is_out_of_memory(info.value)


def test_measure_memory_rejects_unknown_mode_and_device():
    with pytest.raises(ValueError, match="valid: infer, train"):
        measure_memory(MemoryJob(KnownAllocationRecipe(1), "eval", batch_size=2))
    with pytest.raises(ValueError, match="valid: cpu, cuda"):
        measure_memory(MemoryJob(KnownAllocationRecipe(1), "infer", batch_size=2, device="tpu"))


# ------------------------------------------------------------------------------------------ CUDA's meter

class _FakeAllocator:
    """torch.cuda's statistics over a fake allocator: allocate() moves the counters as the caching allocator
    would; reset_peak_memory_stats sets the peaks to the current values."""

    def __init__(self, held: int, cached: int):
        self.allocated, self.reserved = held, held + cached
        self.peak, self.peak_reserved = held + 999 * MIB, self.reserved  # an earlier, larger peak
        self.calls = []

    def allocate(self, n: int):
        self.allocated += n
        self.reserved = max(self.reserved, self.allocated)
        self.peak = max(self.peak, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, n: int):
        self.allocated -= n

    def patch(self, monkeypatch):
        def empty_cache():
            self.calls.append("empty_cache")
            self.reserved = self.allocated

        def reset(device=None):
            self.calls.append("reset")
            self.peak, self.peak_reserved = self.allocated, self.reserved

        for name, fn in dict(synchronize=lambda device=None: self.calls.append("sync"), empty_cache=empty_cache,
                             reset_peak_memory_stats=reset,
                             memory_allocated=lambda device=None: self.allocated,
                             memory_reserved=lambda device=None: self.reserved,
                             max_memory_allocated=lambda device=None: self.peak,
                             max_memory_reserved=lambda device=None: self.peak_reserved).items():
            monkeypatch.setattr(torch.cuda, name, fn)


def test_cuda_meter_reports_the_peak_above_what_was_held(monkeypatch):
    """The meter resets the peak (an earlier, larger one is not reported), empties the cache first (so cached
    blocks do not hide reserved growth), and subtracts what was allocated and reserved before the step."""
    fake = _FakeAllocator(held=500 * MIB, cached=300 * MIB)
    fake.patch(monkeypatch)
    meter = memory._CudaMeter("cuda:0")
    with meter:
        fake.allocate(64 * MIB)
        fake.allocate(32 * MIB)
        fake.free(96 * MIB)
    assert fake.calls[:3] == ["sync", "empty_cache", "reset"] and fake.calls[-1] == "sync"
    r = meter.result()
    assert r.peak_mib == pytest.approx(96) and r.reserved_mib == pytest.approx(96)
    assert r.baseline_mib == pytest.approx(500)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["infer", "train"])
def test_cuda_peak_matches_a_known_allocation(mode):
    peak = measure_memory(MemoryJob(KnownAllocationRecipe(128), mode, batch_size=8, device="cuda"))
    assert abs(peak.peak_mib - 128) <= 0.1 * 128, peak
    assert peak.reserved_mib >= peak.peak_mib * 0.99


# ------------------------------------------------------------------------------------------- the step

class _Tiny(torch.nn.Module):
    def __init__(self, n=5):
        super().__init__()
        self.fc = torch.nn.Linear(4, n)

    def forward(self, x):
        return self.fc(x)  # (B, N)


def test_train_step_updates_weights_and_zero_grad_clears_gradients():
    model = _Tiny()
    before = model.fc.weight.detach().clone()
    step = Step(model, (4,), {}, mode="train", loss="bce", batch_size=3)
    assert step.targets.shape == (3, 5) and set(step.targets.unique().tolist()) <= {0.0, 1.0}  # multi-hot
    step()
    assert not torch.equal(before, model.fc.weight) and model.fc.weight.grad is not None
    assert len(step.optimizer.state) == 2  # AdamW's state for the weight and the bias
    step.zero_grad()
    assert model.fc.weight.grad is None


def test_single_label_targets_are_class_indices_and_features_need_none():
    logits = torch.zeros(6, 10)
    t = make_targets(logits, "ce")
    assert t.shape == (6,) and t.dtype == torch.int64 and int(t.max()) < 10
    assert make_targets(logits, "features") is None
    with pytest.raises(ValueError, match="valid: bce, ce, features"):
        make_targets(logits, "asl")
    with pytest.raises(ValueError, match="valid: infer, train"):
        Step(_Tiny(), (4,), {}, mode="fit", loss="bce", batch_size=2)


def test_measure_step_warms_up_and_measures_one_step_with_a_fresh_optimizer():
    """measure_step calls the step once under the meter, at the job's batch, with an optimizer whose state the
    step itself creates (so it is part of the peak)."""
    seen = {}

    class Meter:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def result(self):
            return PeakMemory(peak_mib=1.0)

    class Spy(KnownAllocationRecipe):
        def build(self):
            model, shape, kw = super().build()
            orig = model.forward

            def forward(x):
                seen.setdefault("batches", []).append(x.shape[0])
                return orig(x)
            model.forward = forward
            return model, shape, kw

    measure_step(MemoryJob(Spy(0), "train", batch_size=16), meter=Meter())
    assert seen["batches"][-1] == 16 and 2 in seen["batches"][:-1]  # warm-up at batch 2 before the step


def test_time_interleaved_calls_setup_outside_the_timer():
    from bench.measure.timing import time_interleaved

    now = [0.0]
    log = []

    def clock():
        return now[0]

    def setup():
        log.append("setup")
        now[0] += 100.0  # would dominate the samples if it were timed

    def fn():
        log.append("fn")
        now[0] += 0.001

    t = time_interleaved({"a": fn}, setup={"a": setup}, warmup=1, min_iters=3, max_iters=3, min_time_s=0,
                         clock=clock)["a"]
    assert log == ["setup", "fn"] * 4
    assert t.n == 3 and t.median_ms == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown callables"):
        time_interleaved({"a": fn}, setup={"b": setup})


# -------------------------------------------------------------------------------------- rows of a cost cell

def _fake_measure(fits_up_to):
    """measure_memory that 'fits' training steps only up to a batch, inference always; peak ~ batch."""
    calls = []

    def measure(job):
        calls.append((job.recipe.part, job.recipe.head, job.mode, job.batch_size))
        limit = fits_up_to.get(job.recipe.head, 10 ** 9)
        if job.mode == "train" and job.batch_size > limit:
            # as the measuring process reports it: the warm-up at batch 2 already failed when 2 does not fit
            raise StepOutOfMemory(f"train step at batch {job.batch_size} needs more than 1 MiB",
                                  failed_batch=2 if limit < 2 and job.batch_size >= 2 else job.batch_size)
        return PeakMemory(peak_mib=float(job.batch_size) * (3 if job.mode == "train" else 1)
                          + (0 if job.recipe.head is None else 1))
    return measure, calls


def test_cost_rows_record_out_of_memory_and_back_off_without_losing_anything(monkeypatch, tmp_path):
    """One head's training step fits only at batch 2 of 8, another's at none: both rows keep their MACs and
    latency; the first records train_batch_size 2 and why, the second train_status 'oom'; the third head is
    measured at 8. The backbone alone is measured once per batch (cached), at each head's training batch."""
    from bench.run.config import build_config
    from bench.run.runner import Cell, run_cost_cell

    heads = ["gap", "mldecoder(embed=32, heads=2, ffn=64)", "csra"]
    cfg = build_config(heads=heads, backbones=["test_resnet"], img_size=32, num_classes=7, batch_sizes=[8],
                    cost_only=True, min_time_s=0.0, results_dir=str(tmp_path))
    fake, calls = _fake_measure({cfg.heads[1]: 2, "csra": 0})
    monkeypatch.setattr(memory, "measure_memory", fake)
    monkeypatch.setattr(memory, "_CACHE", {})
    rows = {r["head"]: r for r in run_cost_cell(cfg, Cell("cost", "test_resnet", cfg.heads, batch_size=8))}
    gap, mld, csra = (rows[h] for h in cfg.heads)
    for r in rows.values():
        assert r["status"] == "ok" and r["latency_ms_p50"] > 0 and r["gmacs_total"] > 0
        assert r["mem_infer_peak_mib"] == 9.0 and r["mem_infer_backbone_mib"] == 8.0
    assert gap["train_status"] == "ok" and gap["train_batch_size"] == 8 and gap["mem_train_peak_mib"] == 25.0
    assert gap["mem_train_backbone_mib"] == 24.0 and gap["train_step_ms_p50"] > 0 and "error" not in gap
    assert gap["train_step_backbone_ms_p50"] > 0 and gap["train_img_s"] == pytest.approx(8000 / gap["train_step_ms_p50"])
    assert mld["train_batch_size"] == 2 and mld["mem_train_peak_mib"] == 7.0 and mld["mem_train_backbone_mib"] == 6.0
    assert "out of memory at batch 8; measured at 2" in mld["error"] and mld["train_step_ms_p50"] > 0
    assert csra["train_status"] == "oom" and "mem_train_peak_mib" not in csra and "train_step_ms_p50" not in csra
    assert "out of memory at every batch down to 1" in csra["error"]
    # csra's warm-up at batch 2 already failed at batch 8: batches 4 and 2 start no process, batch 1 does
    tried = [c[3] for c in calls if c[1] == "csra" and c[2] == "train"]
    assert tried == [8, 1]
    assert [c[3] for c in calls if c[1] == cfg.heads[1] and c[2] == "train"] == [8, 4, 2]
    assert sum(1 for c in calls if c[1] is None and c[2] == "infer") == 1  # cached


def test_switches_leave_the_columns_out(monkeypatch, tmp_path):
    from bench.run.config import build_config
    from bench.run.runner import Cell, run_cost_cell

    fake, calls = _fake_measure({})
    monkeypatch.setattr(memory, "measure_memory", fake)
    monkeypatch.setattr(memory, "_CACHE", {})
    base = dict(heads=["gap"], backbones=["test_resnet"], img_size=32, num_classes=7, batch_sizes=[2],
                cost_only=True, min_time_s=0.0, results_dir=str(tmp_path))
    cell = Cell("cost", "test_resnet", ["gap"], batch_size=2)
    (row,) = run_cost_cell(build_config(**base, memory=False), cell)
    assert row["train_step_ms_p50"] > 0 and not any(k.startswith("mem_") for k in row) and not calls
    (row,) = run_cost_cell(build_config(**base, train_timing=False, latency=False), cell)
    assert row["mem_train_peak_mib"] == 7.0 and "train_step_ms_p50" not in row and "latency_ms_p50" not in row


def test_probe_protocol_trains_the_head_alone(monkeypatch, tmp_path):
    from bench.run.config import build_config
    from bench.run.runner import Cell, run_cost_cell

    fake, calls = _fake_measure({})
    monkeypatch.setattr(memory, "measure_memory", fake)
    monkeypatch.setattr(memory, "_CACHE", {})
    cfg = build_config(heads=["gap"], backbones=["test_resnet"], img_size=32, num_classes=7, batch_sizes=[2],
                    cost_only=True, min_time_s=0.0, protocol="probe", results_dir=str(tmp_path))
    (row,) = run_cost_cell(cfg, Cell("cost", "test_resnet", ["gap"], batch_size=2))
    assert ("head", "gap", "train", 2) in calls and ("model", "gap", "infer", 2) in calls
    assert not any(c[1] is None and c[2] == "train" for c in calls)  # no backbone training under probe
    assert row["train_step_ms_p50"] > 0 and "train_step_backbone_ms_p50" not in row


def test_estimate_accounts_for_memory_and_training(tmp_path):
    from bench.measure.estimate import estimate_seconds
    from bench.run.config import build_config
    from bench.run.runner import plan_cells

    base = dict(heads=["gap"], backbones=["test_resnet"], img_size=32, batch_sizes=[4], cost_only=True,
                min_time_s=0.0, results_dir=str(tmp_path))
    est = {k: estimate_seconds(build_config(**base, **kw), plan_cells(build_config(**base, **kw)), plots=False)
           for k, kw in dict(all={}, no_mem=dict(memory=False), none=dict(memory=False, train_timing=False)).items()}
    assert est["all"] - est["no_mem"] >= 4 * memory.PROCESS_START_S  # 2 figures for the head, 2 for the backbone
    assert est["no_mem"] > est["none"]


# ------------------------------------------------------------------------- what reads the columns

def _write_rows(path, rows):
    from bench.run.results import ResultsWriter

    with ResultsWriter(str(path)) as w:
        for r in rows:
            w.write(r)


def _cost_row(head, **kw):
    return dict(run_id="r", backbone="resnet18", head=head, img_size=224, num_classes=5000, batch_size=8,
                device="cpu", dtype="fp32", params_total=12e6, params_head=1e6, gmacs_head=0.1, gmacs_total=1.9,
                latency_ms_p50=50.0, throughput_img_s=160.0, status="ok", **kw)


def test_summary_and_timm_export_show_the_train_columns(tmp_path):
    from bench.commands import summary_text
    from bench.results_commands import export_timm_csv
    from bench.run.results import read_results

    path = tmp_path / "r.csv"
    _write_rows(path, [
        _cost_row("gap", mem_infer_peak_mib=50.0, mem_train_peak_mib=200.0, mem_train_backbone_mib=190.0,
                  train_step_ms_p50=300.0, train_img_s=26.7, train_batch_size=8, train_status="ok"),
        _cost_row("txdec", mem_infer_peak_mib=900.0, train_status="oom", error="training step: out of memory"),
    ])
    df = read_results([str(path)])
    text = summary_text(df)
    assert "train MiB b8" in text and "head's train MiB" in text and "train step b8 (ms)" in text
    gap_line = next(l for l in text.splitlines() if l.split()[:2] == ["resnet18", "gap"])
    tx_line = next(l for l in text.splitlines() if l.split()[:2] == ["resnet18", "txdec"])
    assert "200" in gap_line and " 10" in gap_line and "300" in gap_line
    assert "oom" in tx_line and "900" in tx_line
    out = tmp_path / "timm.csv"
    export_timm_csv(df, str(out))
    timm = pd.read_csv(out)
    assert list(timm.columns)[-4:] == ["train_samples_per_sec", "train_step_time", "train_batch_size",
                                       "train_img_size"]
    assert timm.loc[0, "train_step_time"] == 300.0 and timm.loc[0, "train_batch_size"] == 8
    assert pd.isna(timm.loc[1, "train_step_time"]) and pd.isna(timm.loc[1, "train_img_size"])


def test_check_compares_memory_only_when_asked_with_a_relative_tolerance():
    from bench.analysis.check import METRIC_RULES, compare

    for m in ("mem_infer_peak_mib", "mem_train_peak_mib", "train_step_ms_p50", "train_img_s"):
        assert METRIC_RULES[m].kind == "relative" and not METRIC_RULES[m].default
    base = pd.DataFrame([dict(backbone="resnet18", head="gap", mem_train_peak_mib=200.0, gmacs_total=1.8)])
    res = pd.DataFrame([dict(backbone="resnet18", head="gap", mem_train_peak_mib=240.0, gmacs_total=1.8,
                             status="ok")])
    assert list(compare(res, base)["metric"]) == ["gmacs_total"]
    table = compare(res, base, tolerances={"mem_train_peak_mib": 0.1})
    assert table.set_index("metric").loc["mem_train_peak_mib", "status"] == "worse"
    table = compare(res, base, tolerances={"mem_train_peak_mib": 0.25})
    assert table.set_index("metric").loc["mem_train_peak_mib", "status"] == "within noise"


def test_cli_help_names_the_switches(capsys):
    from bench.cli import main

    try:
        main(["run", "--help"])
    except SystemExit as e:
        assert not e.code
    out = capsys.readouterr().out
    assert "--no-memory" in out and "--no-train-timing" in out and "mem_train_peak_mib" in out


@pytest.mark.slow
def test_cost_only_run_fills_the_memory_columns(tmp_path):
    """End to end on a tiny backbone: every row has both memory figures, training above inference, and the
    training step's time."""
    from bench.cli import main
    from bench.run.results import read_results

    try:
        main(["run", "--heads", "gap,mldecoder(embed=32, heads=2, ffn=64)", "--backbone", "test_resnet",
              "--img-size", "32", "--batch-sizes", "4", "--min-time", "0", "--cost-only", "--results-dir",
              str(tmp_path), "--no-plot"])
    except SystemExit as e:
        assert not e.code
    df = read_results([str(tmp_path)])
    assert len(df) == 2 and (df["train_status"] == "ok").all()
    assert (df["mem_train_peak_mib"] > df["mem_infer_peak_mib"]).all()
    # the head's share of a tiny model is below the method's ~1 MiB floor (small allocations may reuse heap pages)
    assert (df["mem_train_peak_mib"] >= df["mem_train_backbone_mib"] - 1.0).all()
    assert (df["train_step_ms_p50"] > 0).all() and (df["train_batch_size"] == 4).all()
    assert os.path.exists(os.path.join(str(tmp_path), os.listdir(str(tmp_path))[0]))


# ------------------------------------------------------------------------------ the report's "which heads fit"

def _study_rows():
    """Rows as the classes study writes them, from known curves: the backbone alone takes 1000 MiB; txdec's own
    share is 1e-4 * N^2 MiB and it is out of memory from N=5000; full decoding's is N MiB; GAP's 0.01 * N."""
    rows = []
    for n in (80, 1000, 5000, 9605, 20000):
        for head, share, oom in (("gap", 0.01 * n, False), ("txdec", 1e-4 * n * n, n >= 5000),
                                 (f"mldecoder(groups={n})", float(n), False)):
            r = dict(backbone="tresnet_m", head=head, img_size=224, num_classes=n, batch_size=32, status="ok",
                     params_total=0, params_backbone=0, mem_train_backbone_mib=1000.0)
            if oom:
                r.update(train_status="oom", error="training step: out of memory at every batch down to 1")
            else:
                r.update(train_status="ok", train_batch_size=32, mem_train_peak_mib=1000.0 + share)
            rows.append(r)
        rows.append(dict(backbone="tresnet_m", head="gap", img_size=224, num_classes=n, batch_size=1, status="ok",
                         latency_ms_p50=40.0))  # the latency configurations: no memory, ignored
    return pd.DataFrame(rows)


def test_which_heads_fit_measures_interpolates_and_extrapolates(tmp_path):
    from bench.studies.classes import largest_n, memory_section, training_footprints

    df = _study_rows()
    fp = training_footprints(df, batch=32)
    assert sorted(fp["head"].unique()) == ["gap", "mldecoder(groups=N)", "txdec"]
    budget = 16 * 1024
    allowed = budget - 1000 - 32 * 3 * 224 ** 2 * 4 / MIB  # the head's own share within the budget
    tx = largest_n(fp[fp["head"] == "txdec"], budget)
    assert tx["how"].startswith("extrapolated") and "N^2.00" in tx["how"] and "did not fit" in tx["how"]
    assert tx["n"] == pytest.approx((allowed / 1e-4) ** 0.5, rel=0.01)
    full = largest_n(fp[fp["head"] == "mldecoder(groups=N)"], budget)
    assert full["how"] == "interpolated between measured N=9605 and 20000"
    assert full["n"] == pytest.approx(allowed, rel=0.01)
    gap = largest_n(fp[fp["head"] == "gap"], budget)
    assert gap["how"].startswith("extrapolated") and "beyond the largest N measured" in gap["how"]
    assert gap["n"] == pytest.approx(20000 * allowed / 200, rel=0.01)

    text, plots = memory_section(df, str(tmp_path))
    assert "Which heads fit" in text and "16 GiB" in text
    tx_line = next(l for l in text.splitlines() if l.startswith("| txdec "))
    assert "80, 1,000 (out of memory here at 5,000, 9,605, 20,000)" in tx_line and "extrapolated" in tx_line
    assert len(plots) == 1 and os.path.getsize(plots[0]) > 1000


def test_which_heads_fit_says_when_there_is_nothing_to_show(tmp_path):
    from bench.studies.classes import largest_n, memory_section, training_footprints

    df = _study_rows()
    text, plots = memory_section(df[df["batch_size"] == 1], str(tmp_path))
    assert "No training-memory rows at batch 32" in text and plots == []
    fp = training_footprints(df, batch=32)
    r = largest_n(fp[fp["head"] == "txdec"], 500.0)  # even N=80 is over a 500 MiB budget
    assert r["n"] is None and r["over"] and "smallest N measured (80)" in r["how"]
