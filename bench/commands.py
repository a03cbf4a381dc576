"""What the CLI commands do, kept apart from click's option declarations in ``bench.cli``.

``bench run`` and ``bench study NAME`` take one ``bench.run.config.RunOptions`` (what the user gave); the run's
defaults are decided by ``bench.run.config.resolve_config`` alone."""
from __future__ import annotations

import os
import time
from typing import List, Optional

import click
import pandas as pd
import timm
from tqdm import tqdm

from .analysis.rows import ok_rows
from .backbones.model import create_backbone, load_checkpoint_file
from .backbones.pretrained import check_hub
from .datasets import DATASETS
from .heads import create_head
from .measure.estimate import AFTER_CELLS_S, PLOTS_S, cell_key, duration, estimate_cells, estimate_seconds, faster_ways
from .report.fmt import format_table
from .report.plots import plot_results
from .report.fmt import fmt_interval, fmt_pm
from .report.tables import summarize
from .run.config import DEFAULTS, RunConfig, RunOptions, resolve_config
from .run.executors import RayExecutor, run_many
from .run.interrupt import Interrupted, handle_signals, resume_hint, with_resume
from .run.results import read_results
from .run.runner import LocalExecutor, pending_cells, plan_cells, run
from .spec import parse_spec
from .studies import RUNGS, get_study


def validate(cfg: RunConfig) -> None:
    """Fail before any work on names that cannot run: heads, backbones, dataset, a --cache-dir that is a file."""
    for spec in cfg.heads:  # parsed already (HeadSpec): built once here so that option values the head rejects
        create_head(spec, 64, max(cfg.num_classes, 1))  # fail now, not in every cell
    for bb in cfg.backbones:
        if not timm.is_model(bb):
            create_backbone(bb)  # raises ValueError with close matches
    if cfg.pretrained:
        check_hub(cfg.backbones)  # one line now, not a minute of retries in the first cell
    if not cfg.cost_only:
        DATASETS.get(parse_spec(cfg.dataset).name)
    if cfg.checkpoint:  # in every mode, --cost-only too: a typo must not pass silently
        load_checkpoint_file(cfg.checkpoint)
    if cfg.protocol == "eval" and not cfg.checkpoint and not cfg.cost_only and not cfg.pretrained:
        raise ValueError("--protocol eval evaluates a trained model: give --checkpoint PATH (or --pretrained)")
    if cfg.cache_dir:  # else every probe cell would fail on it, one by one, after the run has started
        given = os.path.abspath(cfg.cache_dir)
        here = given
        while not os.path.exists(here) and os.path.dirname(here) != here:
            here = os.path.dirname(here)  # the part of the path that exists: it must be a folder
        if not os.path.isdir(here):
            where = "is a file" if here == given else f"is under {here!r}, a file"
            raise ValueError(f"--cache-dir {cfg.cache_dir!r} {where}, not a folder")


def _argv() -> list:
    """The words after ``bench`` of this invocation (for the command that resumes it)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return list(obj.get("argv", [])) if isinstance(obj, dict) else []


def _stopped(cfg_path: str, hint: str, signum_name: str) -> None:
    click.echo(f"\nstopped by {signum_name}: every finished row is in {cfg_path}; continue with\n  {hint}", err=True)


def run_command(options: RunOptions) -> None:
    """``bench run``: resolve the configuration, check it, print what will run and its estimate, run the pending
    cells behind a progress bar, then print the summary (and write the plots)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("bench run does not run under torchrun (every process would write rows); for "
                         "data-parallel fine-tuning use `torchrun --nproc_per_node=N -m bench.train.distributed ...`")
    cfg = resolve_config(options)  # the device once: the header, the defaults and every row name the same one
    validate(cfg)
    ex = make_executor(options.executor, options.ray_address)
    all_cells = plan_cells(cfg)
    cells = pending_cells(cfg, all_cells)
    asked_device = DEFAULTS["device"] if options.device is None else options.device
    per_cell = _print_header(cfg, all_cells, cells, asked_device, options.plot)
    if not cells:
        click.echo("Nothing to run: every cell of this run is already in " + cfg.results_path)
    t0 = time.time()
    errors = _run_behind_bar(cfg, ex, cells, per_cell)
    elapsed = time.time() - t0
    df = read_results([cfg.results_path]) if os.path.exists(cfg.results_path) else None
    if df is not None and len(df):
        click.echo("\n" + summary_text(df))
    click.echo(f"\nRun {cfg.run_id}: {len(cells)} cells in {elapsed:.0f} s; rows in {cfg.results_path}")
    if errors:
        click.echo(f"{len(errors)} rows failed; first error: {errors[0].get('error', '')[:300]}", err=True)
    if options.plot and df is not None and len(df):
        out = os.path.join(os.path.dirname(cfg.results_dir.rstrip("/")) or ".", "plots", cfg.run_id)
        files = plot_results(df, out)
        if files:
            click.echo("Plots: " + ", ".join(files))
    if errors:
        raise SystemExit(1)


def _run_behind_bar(cfg: RunConfig, ex, cells, per_cell) -> List[dict]:
    """Run the cells with a progress bar; returns the error rows. Stopped by a signal: the command that resumes
    the run, and the signal's exit code."""
    bar, on_cell = _progress_bar(cells, per_cell)
    errors: List[dict] = []

    def on_row(row):
        if row.get("status") == "error":
            errors.append(row)

    try:
        with handle_signals():
            run(cfg, executor=ex, on_cell=on_cell, on_row=on_row, progress=lambda msg: bar.set_postfix_str(msg[:60]))
    except Interrupted as stop:
        bar.close()
        _stopped(cfg.results_path, resume_hint(_argv(), lambda a: with_resume(a, cfg.run_id)), str(stop))
        raise SystemExit(stop.exit_code)
    finally:
        bar.close()
    return errors


def make_executor(name: str, address: Optional[str]):
    if name == "local":
        return LocalExecutor()
    return RayExecutor(address)


def _progress_bar(cells, per_cell, disable=None):
    """A bar in estimated seconds: each finished cell advances it by its own estimate, so its rate is the measured
    pace against the estimate and its ETA (tqdm's remaining time) corrects itself as cells finish. Returns
    (bar, on_cell)."""
    if per_cell is None or len(per_cell) != len(cells):  # no estimate: count cells
        bar = tqdm(total=len(cells), unit="cell", dynamic_ncols=True, disable=disable)
        return bar, lambda cell: bar.update(1)
    share = {}
    for c, s in zip(cells, per_cell):
        share[cell_key(c)] = share.get(cell_key(c), 0.0) + max(s, 0.01)
    done = [0]
    bar = tqdm(total=round(sum(share.values()), 2), dynamic_ncols=True, disable=disable,
               desc=f"0/{len(cells)} cells",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")

    def on_cell(cell):
        done[0] += 1
        bar.set_description_str(f"{done[0]}/{len(cells)} cells", refresh=False)
        bar.update(min(share.get(cell_key(cell), 0.0), bar.total - bar.n))
    return bar, on_cell


def _print_header(cfg, all_cells, cells, asked_device: str = "", plot: bool = True):
    """Print what the run measures and its estimate; return the per-cell estimates (None when not made)."""
    device = cfg.device + (f" (auto: {'CUDA found' if cfg.device.startswith('cuda') else 'no CUDA device here'})"
                           if asked_device == "auto" else "")
    lines = [f"bench run {cfg.run_id}",
             f"  device     {device}",
             f"  backbones  {', '.join(cfg.backbones)} at {cfg.img_size}px, {cfg.device} {cfg.dtype}"
             + (", ImageNet-pretrained" if cfg.pretrained else "")
             + (" channels-last" if cfg.channels_last else "") + (" compiled" if cfg.compile else ""),
             f"  heads      {', '.join(cfg.heads)}",
             "  cost       params, MACs" + (f"; latency/throughput at batch {', '.join(map(str, cfg.batch_sizes))}"
                                            if cfg.timing else "") + f"; N={cfg.num_classes}"]
    if not cfg.cost_only:
        lines.append(f"  accuracy   {cfg.dataset} ({cfg.protocol}, {cfg.epochs} epochs, seeds "
                     f"{', '.join(map(str, cfg.seeds))})")
    done = len(all_cells) - len(cells)
    lines.append(f"  cells      {len(cells)} to run" + (f" ({done} already done)" if done else ""))
    per_cell, note = None, None
    if cells:
        try:
            per_cell = estimate_cells(cfg, cells)
            est = sum(per_cell) + AFTER_CELLS_S + (PLOTS_S if plot else 0.0)
            lines.append(f"  estimate   ~{duration(est)} from now on this machine (from quick measurements of a "
                         "training step, a forward pass and a data read)")
            note = faster_ways(cfg, cells, per_cell)
        except Exception as e:  # an estimate is a courtesy; never fail a run for it
            lines.append(f"  estimate   none ({type(e).__name__}: {str(e).strip()[:80]})")
    lines.append(f"  results    {cfg.results_path}")
    if note:
        lines.append(f"  note       {note}")
    click.echo("\n".join(lines) + "\n")
    return per_cell



def summary_text(df, group=("backbone", "head")) -> str:
    # Show the identifiers that vary (img_size, num_classes, dataset) only when they do.
    group = [g for g in group if g in ("backbone", "head") or df[g].astype(str).nunique() > 1]
    rows = summarize(df, group=tuple(group))
    has_acc = any("acc_mean" in r for r in rows)
    has_time = any("throughput_img_s" in r for r in rows)
    out = []
    extra = [g for g in group if g not in ("backbone", "head")]
    for r in rows:
        o = dict(backbone=r["backbone"], head=r["head"], **{g: r[g] for g in extra},
                 params_head=r.get("params_head", float("nan")),
                 gmacs_head=r.get("gmacs_head"), gmacs_total=r.get("gmacs_total"))
        if has_time:
            o.update(latency=r.get("latency_ms_b1"), throughput=r.get("throughput_img_s"))
        if has_acc:
            o["acc"] = fmt_pm(r.get("acc_mean"), r.get("acc_std"))
            o["metric"] = r.get("metric", "")
            o["ema"] = fmt_pm(r.get("acc_ema_mean"), None)
            if "delta" in r:
                o["delta"] = fmt_interval(r["delta"], r.get("delta_low"), r.get("delta_high"))
                o["verdict"] = r.get("delta_word", "")
        out.append(o)
    cols = ["backbone", "head", *extra, "params_head", "gmacs_head", "gmacs_total"]
    heads = ["backbone", "head", *extra, "head params", "head GMACs", "total GMACs"]
    if has_time:
        tb = max((r.get("timing_batch", 0) for r in rows), default=0)
        cols += ["latency", "throughput"]
        heads += ["latency b1 (ms)", f"img/s b{tb}"]
    mem = _memory_summary(df, group)
    if mem:
        for o in out:
            o.update(mem.get(tuple(o[g] for g in group), {}))
        b = max(m["train_b"] for m in mem.values())
        for key, title in (("mem_infer", f"infer MiB b{b}"), ("mem_train", f"train MiB b{b}"),
                           ("mem_head", "head's train MiB"), ("train_ms", f"train step b{b} (ms)")):
            if any(o.get(key) == o.get(key) and o.get(key) is not None for o in out):
                cols.append(key)
                heads.append(title)
    if has_acc:
        metrics = list(dict.fromkeys(r["metric"] for r in rows if "metric" in r))
        n = max(r.get("n_seeds", 0) for r in rows)
        if len(metrics) > 1:  # settings judged by different metrics (top-1 and mAP): each row names its own
            cols += ["metric"]
            heads += ["metric"]
        metric = metrics[0] if len(metrics) == 1 else "accuracy"
        cols += ["acc", "ema", "delta", "verdict"]
        heads += [f"{metric} (n={n})", f"{metric} EMA", "vs first head, paired (95%)", "difference"]
    text = format_table(out, cols, heads)
    if mem:
        text += ("\n\nMemory: peak of one step above the weights and the batch (on a CPU the growth of a fresh "
                 "process's peak RSS; on CUDA max_memory_allocated); training counts activations, gradients and "
                 "AdamW state. head's train MiB = the model's minus the backbone alone's. A head whose training "
                 "step does not fit at that batch shows 'oom' (or the batch it fitted at).")
    ops = _uncounted_union(df)
    if ops:
        text += ("\n\nNot in the MACs (no counting formula; listed, never counted as zero): " + ops
                 + ".\nMACs count matrix products and convolutions, as timm's gmacs and the paper's FLOPs do.")
    if has_acc:
        text += ("\n\nAccuracy: mean ± std over seeds, last epoch (EMA beside it; nothing selected on the "
                 "evaluation split).\n'vs first head': paired by seed (the heads of a seed share the backbone's "
                 "initial weights and data order), the mean difference from the backbone's first head and its 95% "
                 "interval; 'better' or 'worse' when the interval excludes 0.")
    return text


def _memory_summary(df, group) -> dict:
    """Per group (the summary's keys): memory and training-step figures at the largest batch measured."""
    cols = ("mem_infer_peak_mib", "mem_train_peak_mib", "train_step_ms_p50")
    measured = any(c in df.columns and df[c].notna().any() for c in cols)
    if not measured and not ("train_status" in df.columns and (df["train_status"].astype(str) == "oom").any()):
        return {}
    ok = ok_rows(df)
    out = {}
    for keys, g in ok.groupby(list(group), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        bs = pd.to_numeric(g["batch_size"], errors="coerce")
        if bs.isna().all():  # accuracy rows only (a study's summary groups by dataset too): no cost to show
            continue
        g = g[bs == bs.max()]
        num = {c: pd.to_numeric(g[c], errors="coerce") if c in g.columns else pd.Series(float("nan"), index=g.index)
               for c in (*cols, "mem_train_backbone_mib", "train_batch_size")}
        tb = num["train_batch_size"].dropna()
        row = {"train_b": int(tb.max()) if len(tb) else int(bs.max()),
               "mem_infer": num["mem_infer_peak_mib"].median(), "mem_train": num["mem_train_peak_mib"].median(),
               "mem_head": (num["mem_train_peak_mib"] - num["mem_train_backbone_mib"]).median(),
               "train_ms": num["train_step_ms_p50"].median()}
        status = g["train_status"].astype(str) if "train_status" in g else pd.Series(dtype=str)
        if (status == "oom").all() and len(status):
            row.update(mem_train="oom", mem_head="oom", train_ms="oom")
        elif len(tb) and int(tb.max()) < int(bs.max()):  # backed off: say at which batch
            for k in ("mem_train", "mem_head", "train_ms"):
                if row[k] == row[k]:
                    row[k] = f"{row[k]:.0f} at b{int(tb.max())}"
        out[keys] = row
    return out


def _uncounted_union(df) -> str:
    """The ops listed in the rows' ``uncounted_ops`` column, by name, without call counts (they vary by head)."""
    names = set()
    for cell in df.get("uncounted_ops", []):
        if isinstance(cell, str):
            names.update(part.strip().split(" x")[0] for part in cell.split(",") if part.strip()
                         and not part.strip().startswith("+"))
    return ", ".join(sorted(names))


def study_command(name: str, options: RunOptions) -> None:
    """``bench study NAME``: run every configuration of a study into ``<results-dir>/study-<name>.csv``; cells
    already there are skipped. The options given (not None) override the study's own values."""
    study = get_study(name)
    overrides = options.given()
    results_dir = overrides.pop("results_dir", "results/runs")
    configs = study.configs(results_dir=results_dir, **overrides)
    for cfg in configs:
        validate(cfg)
    plan = [(cfg, pending_cells(cfg, plan_cells(cfg))) for cfg in configs]
    todo = sum(len(c) for _, c in plan)
    total = sum(len(plan_cells(cfg)) for cfg in configs)
    path = configs[0].results_path
    claim = f"claim {study.claim}" if study.claim is not None else "beyond the paper's claims"
    if study.hypotheses:  # the rung of evidence its accuracy verdicts stand on
        claim += f" ({RUNGS[study.rung]})"
    click.echo(f"bench study {name}: {claim}: {study.statement}\n"
               f"  {len(configs)} configurations, {total} cells, {todo} to run ({total - todo} already in {path})\n"
               f"  device {', '.join(sorted({cfg.device for cfg in configs}))}")
    try:
        est = sum(estimate_seconds(cfg, cells, plots=False) for cfg, cells in plan if cells)
        click.echo(f"  estimate ~{duration(est)} on this machine (from quick measurements of its cells' work)")
    except Exception as e:  # an estimate is a courtesy; never fail a study for it
        click.echo(f"  estimate none ({type(e).__name__}: {str(e).strip()[:80]})")
    ex = make_executor(options.executor, options.ray_address)
    errors = []
    t0 = time.time()
    bar = tqdm(total=todo, unit="cell", dynamic_ncols=True, disable=None)
    try:  # every pending cell of every configuration at once, so that a Ray cluster is kept busy
        with handle_signals():
            run_many([cfg for cfg, cells in plan if cells], ex, on_cell=lambda c: bar.update(1),
                     on_row=lambda r: errors.append(r) if r.get("status") == "error" else None,
                     progress=lambda m: bar.set_postfix_str(m[:60]))
    except Interrupted as stop:
        bar.close()
        _stopped(path, resume_hint(_argv() or ["study", name]), str(stop))
        raise SystemExit(stop.exit_code)
    finally:
        bar.close()
    df = read_results([path])
    click.echo("\n" + summary_text(df, group=("backbone", "head", "img_size", "num_classes", "dataset")))
    click.echo(f"\nStudy {name}: {todo} cells in {time.time() - t0:.0f} s; rows in {path}. "
               "`bench report` turns the study files into reports/paper/README.md.")
    if errors:
        click.echo(f"{len(errors)} rows failed; first error: {errors[0].get('error', '')[:300]}", err=True)
        raise SystemExit(1)
