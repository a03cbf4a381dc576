"""The runner: turns a run configuration into cells, executes them and appends their rows to the results store.

A *cell* is the unit of work an executor schedules: a ``cost`` cell measures every head on one backbone
(params, MACs, and latency/throughput at each batch size, heads timed interleaved on the same backbone), an
``accuracy`` cell trains and evaluates one (backbone, head, seed). ``execute_cell`` is a pure function of the
cell (it returns rows and writes nothing), so the same cells run in-process or as Ray tasks; the driver appends
each row as it arrives, so a run that fails halfway keeps what it made and ``--resume`` runs only what is missing.
"""
from __future__ import annotations

import dataclasses
import os
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch

from ..analysis.rows import ok_rows
from ..backbones.model import assemble, create_backbone
from ..datasets import create_dataset
from ..measure.flops import model_cost_cached
from ..measure.memory import HeadRecipe, MemoryJob, Step, StepOutOfMemory, fits, head_kwargs, measure_memory_cached
from ..measure.timing import is_out_of_memory, time_callable, time_interleaved, with_oom_backoff
from ..train.evaluation import train_and_evaluate, train_and_evaluate_probes
from ..train.knn import knn_label
from .config import DTYPES, RunConfig, default_threads, resolve_device  # noqa: F401  (the last two re-exported)
from .results import ResultsWriter, environment, read_results, row_key, weights_label


@dataclass
class Cell:
    """One unit of work. ``key`` holds the identifier columns of the rows it makes (for resuming)."""

    kind: str  # "cost" | "accuracy"
    backbone: str
    heads: List[str]
    seed: Optional[int] = None
    batch_size: Optional[int] = None  # cost cells: the batch size timed (1 when not timing)
    knn: int = 0  # probe cells: also the k-NN baseline with this k (bench.train.knn)

    @property
    def labels(self) -> List[str]:
        """The ``head`` of every row the cell makes: its heads, then the k-NN baseline's label."""
        return list(self.heads) + ([knn_label(self.knn)] if self.knn else [])

    @property
    def label(self) -> str:
        if self.kind == "cost":
            return f"cost {self.backbone} at batch {self.batch_size}: {', '.join(self.heads)}"
        if not self.heads:
            return f"k-NN baseline on {self.backbone} (seed {self.seed})"
        if len(self.heads) > 1 or self.knn:
            return f"probe {len(self.heads)} heads on {self.backbone} (seed {self.seed})"
        return f"train {self.backbone} + {self.heads[0]} (seed {self.seed})"


def plan_cells(cfg: RunConfig) -> List[Cell]:
    """One cost cell per (backbone, batch size): its rows are written as soon as it is timed. Accuracy: with
    ``probe`` one cell per (backbone, seed) holding every head (trained together on the cached features, one row
    each); otherwise one cell per (backbone, head, seed)."""
    cells = [Cell("cost", bb, list(cfg.heads), batch_size=bs)
             for bb in cfg.backbones for bs in (cfg.batch_sizes if cfg.timing else [1])]
    if not cfg.cost_only:
        if cfg.protocol == "probe":
            cells += [Cell("accuracy", bb, list(cfg.heads), seed, knn=cfg.knn)
                      for bb in cfg.backbones for seed in cfg.seeds]
        else:
            cells += [Cell("accuracy", bb, [h], seed)
                      for bb in cfg.backbones for seed in cfg.seeds for h in cfg.heads]
    return cells


def _row_ids(cfg: RunConfig, backbone: str, head: str, **extra) -> Dict[str, object]:
    row = dict(run_id=cfg.run_id, backbone=backbone, head=head, img_size=cfg.img_size, device=cfg.device,
               dtype=cfg.dtype, channels_last=cfg.channels_last, compile=cfg.compile, weights=weights_label(cfg))
    row.update(extra)
    return row


def cell_keys(cfg: RunConfig, cell: Cell) -> List[Dict[str, object]]:
    """The identifiers of the rows a cell will make (what resuming matches on)."""
    if cell.kind == "cost":
        return [_row_ids(cfg, cell.backbone, h, num_classes=cfg.num_classes, batch_size=cell.batch_size)
                for h in cell.heads]
    return [_row_ids(cfg, cell.backbone, h, num_classes=cfg.num_classes, dataset=cfg.dataset,
                     protocol=cfg.protocol, epochs=cfg.epochs, seed=cell.seed) for h in cell.labels]


# ----------------------------------------------------------------------------------------------- cost cells

def _torch_dtype(name: str):
    import torch
    return getattr(torch, DTYPES[name])


def _check_forward(backbone, img_size: int, name: str):
    try:
        with torch.no_grad():
            return backbone(torch.zeros(1, 3, img_size, img_size))
    except (RuntimeError, AssertionError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"backbone {name!r} cannot take img_size {img_size}: {first}") from None


def run_cost_cell(cfg: RunConfig, cell: Cell, progress: Optional[Callable[[str], None]] = None) -> Iterator[dict]:
    """Params and MACs of each head on one backbone; then, at the cell's batch size, latency/throughput (the heads
    timed interleaved), peak memory of inference and of a training step, and the training step's time."""
    backbone = create_backbone(cell.backbone, pretrained=cfg.pretrained, img_size=cfg.img_size).eval()
    _check_forward(backbone, cfg.img_size, cell.backbone)
    models = {spec: assemble(backbone, spec, cfg.num_classes, backbone_name=cell.backbone).eval()
              for spec in cell.heads}
    costs = {}
    for spec, model in models.items():
        if progress:
            progress(f"counting {cell.backbone} + {spec}")
        costs[spec] = model_cost_cached(model, cfg.img_size, head_kwargs(model.head, cfg.num_classes, "cpu",
                                                                      torch.float32))
    env = environment(cfg.device)
    if not cfg.timing:
        for spec in cell.heads:
            yield {**_row_ids(cfg, cell.backbone, spec, num_classes=cfg.num_classes, batch_size=1),
                   **costs[spec], "status": "ok", **env}
        return

    bs = cell.batch_size
    rows = {spec: {**_row_ids(cfg, cell.backbone, spec, num_classes=cfg.num_classes, batch_size=bs),
                   **costs[spec], "status": "ok", **env} for spec in cell.heads}
    if cfg.latency:
        for spec, extra in _latency_columns(cfg, cell, models, backbone, progress).items():
            rows[spec].update(extra)
    if cfg.memory or cfg.train_timing:
        batch = int(next(iter(rows.values()))["batch_size"])
        for spec, extra in _memory_and_training(cfg, cell, models, backbone, batch, progress).items():
            rows[spec].update(extra)
    yield from rows.values()


def _latency_columns(cfg: RunConfig, cell: Cell, models: dict, backbone,
                     progress: Optional[Callable[[str], None]] = None) -> Dict[str, dict]:
    """The inference columns of each head's row at the cell's batch: latency and throughput of the whole model,
    the backbone's and the head's own time (the heads timed interleaved), in the run's device, dtype and memory
    format. A batch that does not fit is halved until one does: the row's ``batch_size`` is then the one timed and
    ``batch_size_requested`` the cell's."""
    bs = cell.batch_size
    device, dtype = torch.device(cfg.device), _torch_dtype(cfg.dtype)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    backbone.to(device=device, dtype=dtype, memory_format=fmt)
    runners = {}
    for spec, model in models.items():
        model.head.to(device=device, dtype=dtype)
        runners[spec] = torch.compile(model) if cfg.compile else model
    bb_run = torch.compile(backbone) if cfg.compile else backbone
    if progress:
        progress(f"timing {cell.backbone} at batch {bs}")

    def measure(b: int):
        x = torch.rand(b, 3, cfg.img_size, cfg.img_size, device=device, dtype=dtype).contiguous(memory_format=fmt)
        kw = {s: head_kwargs(m.head, cfg.num_classes, device, dtype) for s, m in models.items()}
        with torch.no_grad():
            feats = backbone(x)
            t_bb = time_callable(lambda: bb_run(x), device=cfg.device, min_time_s=cfg.min_time_s)
            t_head = time_interleaved({s: (lambda s=s: models[s].head(feats, **kw[s])) for s in models},
                                      device=cfg.device, min_time_s=cfg.min_time_s)
            t_e2e = time_interleaved({s: (lambda s=s: runners[s](x, **kw[s])) for s in models},
                                     device=cfg.device, min_time_s=cfg.min_time_s)
        return t_bb, t_head, t_e2e

    (t_bb, t_head, t_e2e), used = with_oom_backoff(measure, bs)
    out = {}
    for spec in cell.heads:
        t = t_e2e[spec]
        out[spec] = {"batch_size_requested": bs if used != bs else "",
                     "latency_ms_p50": t.median_ms, "latency_ms_iqr": t.iqr_ms, "latency_n": t.n,
                     "throughput_img_s": used * 1000.0 / t.median_ms,
                     "backbone_ms_p50": t_bb.median_ms, "backbone_ms_iqr": t_bb.iqr_ms,
                     "head_ms_p50": t_head[spec].median_ms, "head_ms_iqr": t_head[spec].iqr_ms,
                     **({"batch_size": used} if used != bs else {})}
    return out


_MULTILABEL: Dict[tuple, bool] = {}


def _train_loss(cfg: RunConfig) -> str:
    """The training step's loss: BCE on multi-hot targets for multi-label data (and cost-only runs, whose N is a
    label count like COCO's), cross-entropy for single-label data."""
    if cfg.cost_only:
        return "bce"
    key = (cfg.dataset, cfg.data_root)
    if key not in _MULTILABEL:
        _MULTILABEL[key] = bool(create_dataset(cfg.dataset, "val", root=cfg.data_root, img_size=32).multilabel)
    return "bce" if _MULTILABEL[key] else "ce"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


@dataclass
class _StepColumns:
    """The memory and training-step columns of a cost cell's rows as they are filled in: per head its columns
    (``out``), its error notes, the batch its training step fits at (``train_bs``; None: at none) and that step's
    peak memory (``peaks``)."""

    out: Dict[str, dict]
    errors: Dict[str, List[str]]
    train_bs: Dict[str, Optional[int]]
    peaks: Dict[str, object]


@dataclass
class _MemoryJobs:
    """The memory measurements of one cost cell (``bench.measure.memory``: on the CPU each in a fresh process)."""

    cfg: RunConfig
    cell: Cell
    loss: str
    threads: int

    def peak(self, head: Optional[str], mode: str, b: int):
        """The ``PeakMemory`` of one ``mode`` step at batch ``b``: of the head's model (the head alone for a probe's
        training step), or of the backbone alone (``head`` None)."""
        cfg = self.cfg
        part = "backbone" if head is None else ("head" if cfg.protocol == "probe" and mode == "train" else "model")
        return measure_memory_cached(MemoryJob(
            HeadRecipe(self.cell.backbone, head, cfg.num_classes, cfg.img_size, part), mode, b,
            loss="features" if head is None else self.loss, device=cfg.device, dtype=cfg.dtype,
            channels_last=cfg.channels_last, threads=self.threads))

    def train_backoff(self, head: Optional[str], batch: int):
        """(PeakMemory, batch) of the training step at the largest batch <= ``batch`` that fits."""
        failed: List[int] = []  # batches known not to fit: larger ones are not tried in a new process

        def attempt(b: int):
            if failed and b >= min(failed):
                raise StepOutOfMemory(f"train step at batch {b}: does not fit (batch {min(failed)} did not)")
            try:
                return self.peak(head, "train", b)
            except StepOutOfMemory as err:
                failed.append(err.failed_batch or b)  # the warm-up's batch when already that did not fit
                raise
        return with_oom_backoff(attempt, batch)


def _memory_and_training(cfg: RunConfig, cell: Cell, models: dict, backbone, batch: int,
                         progress: Optional[Callable[[str], None]] = None) -> Dict[str, dict]:
    """The memory and training-step columns of each head's row at ``batch`` (see ``bench.measure.memory``).

    Memory first, each figure in a fresh process on the CPU: inference at ``batch``, the training step from
    ``batch`` down (halved on out of memory, as latency is) to the batch that fits, recorded as
    ``train_batch_size``; the backbone alone beside each, at the same batch. Then the training steps that fit are
    timed in this process, interleaved (the backbone alone as one more entry). Under ``--protocol probe`` the
    training step is the head alone on backbone features. Nothing here fails the row: a step that fits at no batch
    gets ``train_status`` "oom", any other failure "error", the reason in ``error``.
    """
    loss = _train_loss(cfg)
    jobs = _MemoryJobs(cfg, cell, loss, threads=torch.get_num_threads())
    cols = _StepColumns({spec: {} for spec in cell.heads}, {spec: [] for spec in cell.heads}, {}, {})
    for spec in cell.heads:
        if cfg.memory:
            if progress:
                progress(f"memory of {cell.backbone} + {spec} at batch {batch}")
            _measure_memory(jobs, spec, batch, cols)
        else:
            cols.train_bs[spec] = batch
    if cfg.train_timing:
        _time_training(_TrainingSteps(cfg, models, backbone, loss), cell, batch, cols, progress)
    for spec in cell.heads:
        if cols.errors[spec]:
            cols.out[spec]["error"] = "; ".join(cols.errors[spec])[:1000]
    return cols.out


def _measure_memory(jobs: _MemoryJobs, spec: str, batch: int, cols: _StepColumns) -> None:
    """The memory columns of head ``spec``: its inference at ``batch`` and its training step at the largest batch
    that fits, the backbone alone beside each; a figure that cannot be had is noted in its errors."""
    r, e = cols.out[spec], cols.errors[spec]
    try:
        r["mem_infer_peak_mib"] = (p := jobs.peak(spec, "infer", batch)).peak_mib
        r["mem_infer_reserved_mib"] = p.reserved_mib
        r["mem_infer_backbone_mib"] = jobs.peak(None, "infer", batch).peak_mib
    except (StepOutOfMemory, RuntimeError) as err:
        e.append(f"inference memory: {_first_line(err)}")
    try:
        cols.peaks[spec], cols.train_bs[spec] = jobs.train_backoff(spec, batch)
        r.update(mem_train_peak_mib=cols.peaks[spec].peak_mib, mem_train_reserved_mib=cols.peaks[spec].reserved_mib,
                 train_batch_size=cols.train_bs[spec], train_status="ok")
        if cols.train_bs[spec] != batch:
            e.append(f"training step: out of memory at batch {batch}; measured at {cols.train_bs[spec]}")
    except StepOutOfMemory as err:
        cols.train_bs[spec] = None
        r["train_status"] = "oom"
        e.append(f"training step: out of memory at every batch down to 1 ({_first_line(err)})")
    except RuntimeError as err:
        cols.train_bs[spec] = None
        r["train_status"] = "error"
        e.append(f"training step memory: {_first_line(err)}")
    if jobs.cfg.protocol != "probe" and cols.train_bs[spec] is not None:  # the backbone alone at that batch
        try:
            r["mem_train_backbone_mib"] = jobs.peak(None, "train", cols.train_bs[spec]).peak_mib
        except (StepOutOfMemory, RuntimeError) as err:
            e.append(f"backbone training memory: {_first_line(err)}")


_ALONE = "(backbone alone)"  # the backbone's own training step: not a head spec (none starts with a parenthesis)


class _TrainingSteps:
    """Makes the training steps a cost cell times (``bench.measure.memory.Step``): a head's (the head alone on backbone
    features under ``--protocol probe``, else its whole model) and the backbone's alone (``_ALONE``)."""

    def __init__(self, cfg: RunConfig, models: dict, backbone, loss: str):
        self.cfg, self.models, self.backbone, self.loss = cfg, models, backbone, loss
        self.probe = cfg.protocol == "probe"
        self.image = (3, cfg.img_size, cfg.img_size)
        self.feat_shape = None
        if self.probe:
            with torch.no_grad():
                self.feat_shape = tuple(backbone.float().to(cfg.device)(
                    torch.zeros(1, *self.image, device=cfg.device)).shape[1:])

    def make(self, name: str, b: int) -> Step:
        cfg = self.cfg
        common = dict(mode="train", batch_size=b, device=cfg.device, dtype=cfg.dtype,
                      channels_last=cfg.channels_last)
        if name == _ALONE:
            return Step(self.backbone, self.image, {}, loss="features", **common)
        m = self.models[name]
        kw = head_kwargs(m.head, cfg.num_classes, "cpu", torch.float32)
        if self.probe:
            return Step(m.head, self.feat_shape, kw, loss=self.loss, **common)
        return Step(m, self.image, kw, loss=self.loss, **common)


def _time_training(steps: _TrainingSteps, cell: Cell, batch: int, cols: _StepColumns,
                   progress: Optional[Callable[[str], None]] = None) -> None:
    """Time the training steps that fit (see ``_memory_and_training``), filling ``cols``."""
    todo = _steps_to_time(cell, cols)
    if not todo:
        return
    if not steps.probe:
        todo[_ALONE] = batch if batch in todo.values() else max(todo.values())
    if progress:
        progress(f"timing training steps of {cell.backbone} at batch {batch}")
    timings, used = _time_steps(steps, todo, cols)
    bb_t = timings.get(_ALONE)
    for spec in cell.heads:
        t = timings.get(spec)
        if t is None:
            continue
        cols.out[spec].update(train_step_ms_p50=t.median_ms, train_step_ms_iqr=t.iqr_ms, train_step_n=t.n,
                              train_img_s=used[spec] * 1000.0 / t.median_ms, train_batch_size=used[spec])
        cols.out[spec].setdefault("train_status", "ok")
        if bb_t is not None and used.get(_ALONE) == used[spec]:
            cols.out[spec].update(train_step_backbone_ms_p50=bb_t.median_ms, train_step_backbone_ms_iqr=bb_t.iqr_ms)


def _steps_to_time(cell: Cell, cols: _StepColumns) -> Dict[str, int]:
    """``{head: batch}`` of the heads whose training step fits (at that batch) in this process now."""
    todo: Dict[str, int] = {}
    for spec in cell.heads:
        b = cols.train_bs.get(spec)
        if b is None:
            continue
        if spec in cols.peaks and not fits(cols.peaks[spec]):
            cols.errors[spec].append(f"training step not timed: its {cols.peaks[spec].peak_mib:.0f} MiB peak is more "
                                     "than this process can take now")
            continue
        todo[spec] = b
    return todo


def _time_steps(steps: _TrainingSteps, todo: Dict[str, int], cols: _StepColumns) -> tuple:
    """(timings, the batch each was timed at) of the steps ``todo``: interleaved; when they do not fit together,
    one at a time, each with the latency's back-off. A failure other than out of memory marks the heads' rows."""
    cfg = steps.cfg
    timings, used, interleaved = {}, dict(todo), {}
    try:
        interleaved = {name: steps.make(name, b) for name, b in todo.items()}
        timings = time_interleaved(dict(interleaved), setup={n: s.zero_grad for n, s in interleaved.items()},
                                   device=cfg.device, min_time_s=cfg.min_time_s, warmup=2)
    except Exception as e:
        if not is_out_of_memory(e):  # recorded in the rows; the rest of the cell stands
            for spec in todo:
                if spec != _ALONE:
                    cols.out[spec]["train_status"] = "error"
                    cols.errors[spec].append(f"training step time: {_first_line(e)}")
            return {}, used
        interleaved = {}  # their memory freed before the steps are tried alone
        timings = _time_one_by_one(steps, todo, used, cols)
    finally:
        for s in interleaved.values():
            s.zero_grad()
            s.optimizer = None
        for m in steps.models.values():
            m.eval()
    return timings, used


def _time_one_by_one(steps: _TrainingSteps, todo: Dict[str, int], used: Dict[str, int], cols: _StepColumns) -> dict:
    """Timings of the steps ``todo`` one at a time, each halved on out of memory (the batch timed in ``used``)."""
    cfg = steps.cfg
    timings = {}
    for name, b in todo.items():

        def one(bb: int, name=name):
            s = steps.make(name, bb)
            try:
                return time_callable(s, device=cfg.device, min_time_s=cfg.min_time_s, warmup=2)
            finally:
                s.zero_grad()
        try:
            timings[name], used[name] = with_oom_backoff(one, b)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            if name != _ALONE:
                cols.out[name]["train_status"] = "oom"
                cols.errors[name].append(f"training step time: out of memory ({_first_line(err)})")
    return timings


# ------------------------------------------------------------------------------------------- accuracy cells

def run_accuracy_cell(cfg: RunConfig, cell: Cell, progress: Optional[Callable[[str], None]] = None) -> Iterator[dict]:
    """Train (per protocol) and evaluate the cell's heads on one (backbone, seed); one row per head with cost and
    accuracy columns. A probe cell trains its heads together; a head that fails there leaves the others' rows
    and raises after them (``execute_cell`` then records an error row for it)."""
    if cfg.protocol != "probe":
        for head in cell.heads:
            yield train_and_evaluate(cfg, cell.backbone, head, cell.seed, progress=progress)
        return
    errors: dict = {}
    yield from train_and_evaluate_probes(cfg, cell.backbone, cell.heads, cell.seed, progress=progress, errors=errors,
                                         knn=cell.knn)
    if errors:
        raise RuntimeError("; ".join(f"{h}: {type(e).__name__}: {str(e).strip()[:200]}" for h, e in errors.items()))


def execute_cell(cfg: RunConfig, cell: Cell, progress: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Run one cell with ``cfg.threads`` torch threads and return its rows; an error becomes one row per expected
    key with status 'error'. A row whose identifiers are not one of the cell's planned keys is a bug (resuming
    would never see it as done) and raises."""
    fn = run_cost_cell if cell.kind == "cost" else run_accuracy_cell
    rows: List[dict] = []
    planned = {row_key(k) for k in cell_keys(cfg, cell)}
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        for row in fn(cfg, cell, progress):
            if row_key(row) not in planned:
                raise RuntimeError(f"cell {cell.label!r} made a row keyed {row_key(row)}, not one of its planned "
                                   f"keys {sorted(planned)}")
            rows.append(row)
    except (KeyboardInterrupt, ValueError):
        raise
    except Exception as e:  # a failed cell is recorded and the others go on
        done = {(r["head"], r.get("batch_size")) for r in rows}
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        for key in cell_keys(cfg, cell):
            if (key["head"], key.get("batch_size")) not in done:
                rows.append({**key, "status": "error", "error": msg, **environment(cfg.device)})
        rows[-1]["error"] = msg + " | " + traceback.format_exc(limit=3).replace("\n", " ")[-400:]
    finally:
        torch.set_num_threads(threads_before)
    return rows


# --------------------------------------------------------------------------------------------------- driver

def _done_keys(cfg: RunConfig) -> set:
    """Keys of the ok rows already in this run's file (for --resume)."""
    if not os.path.exists(cfg.results_path):
        return set()
    df = read_results([cfg.results_path])
    df = ok_rows(df)
    return {row_key(r) for r in df.to_dict("records")}


def pending_cells(cfg: RunConfig, cells: Sequence[Cell]) -> List[Cell]:
    """The cells of ``cells`` that some planned row of is not yet in the results file as an ok row."""
    done = _done_keys(cfg)
    out = []
    for c in cells:
        missing = [h for h, k in zip(c.labels, cell_keys(cfg, c)) if row_key(k) not in done]
        if not missing:
            continue
        if len(missing) < len(c.labels) and (c.kind == "accuracy" or not cfg.timing):
            # a probe cell whose other heads finished, or a cost cell that only counts (params, MACs): a head's
            # result does not depend on the heads beside it. A timed cost cell runs whole: its heads are timed
            # interleaved, in the same conditions.
            c = dataclasses.replace(c, heads=[h for h in c.heads if h in missing],
                                    knn=c.knn if c.knn and knn_label(c.knn) in missing else 0)
        out.append(c)
    return out


class LocalExecutor:
    """Runs cells one after another in this process."""

    def map(self, cfg: RunConfig, cells: Sequence[Cell], progress=None) -> Iterator[tuple]:
        """Yields (cell, rows) as each cell finishes."""
        for cell in cells:
            yield cell, execute_cell(cfg, cell, progress)


def run(cfg: RunConfig, executor=None, on_row: Optional[Callable[[dict], None]] = None,
        on_cell: Optional[Callable[[Cell], None]] = None, progress=None) -> List[dict]:
    """Execute every pending cell of ``cfg`` and append each row to ``cfg.results_path`` as it arrives."""
    cells = pending_cells(cfg, plan_cells(cfg))
    executor = executor or LocalExecutor()
    rows: List[dict] = []
    with ResultsWriter(cfg.results_path) as writer:
        for cell, cell_rows in executor.map(cfg, cells, progress):
            for row in cell_rows:
                if writer.holds(row):  # a cell partly done before (one head of a cost cell): keep the first
                    continue
                writer.write(row)
                rows.append(row)
                if on_row:
                    on_row(row)
            if on_cell:
                on_cell(cell)
    return rows
