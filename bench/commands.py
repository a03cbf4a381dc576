"""What the CLI commands do, kept apart from click's option declarations in ``bench.cli``."""
from __future__ import annotations

import glob
import os
import time
from typing import Optional

import click

from .spec import split_specs

from .datasets.defaults import DATASET_DEFAULTS  # noqa: E402,F401  (re-exported)


def validate(cfg) -> None:
    """Fail before any work on names that cannot run: heads, backbones, dataset, a --cache-dir that is a file."""
    import timm

    from .heads import create_head
    from .model import create_backbone  # noqa: F401  (import errors surface here)

    for spec in cfg.heads:
        create_head(spec, 64, max(cfg.num_classes, 1))
    for bb in cfg.backbones:
        if not timm.is_model(bb):
            create_backbone(bb)  # raises ValueError with close matches
    if cfg.pretrained:
        from .pretrained import check_hub

        check_hub(cfg.backbones)  # one line now, not a minute of retries in the first cell
    if not cfg.cost_only:
        from .datasets import DATASETS
        from .spec import parse_spec
        DATASETS.get(parse_spec(cfg.dataset).name)
    if cfg.checkpoint:  # in every mode, --cost-only too: a typo must not pass silently
        from .model import load_checkpoint_file

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


def _run_ids(results_dir: str) -> list:
    """The run ids in a results folder, latest first (study files excluded)."""
    files = sorted(glob.glob(os.path.join(results_dir, "*.csv")), key=os.path.getmtime, reverse=True)
    return [os.path.splitext(os.path.basename(f))[0] for f in files
            if not os.path.basename(f).startswith("study-")]


def resolve_resume(resume: Optional[str], results_dir: str) -> str:
    """The run id ``--resume`` names ('last': the latest run); a run that is not in ``results_dir`` is an error
    that lists the latest few (resuming a typo would silently start a new run under that name)."""
    if not resume:
        return ""
    ids = _run_ids(results_dir)
    if resume == "last":
        if not ids:
            raise ValueError(f"--resume last: no runs in {results_dir!r}")
        return ids[0]
    if not os.path.exists(os.path.join(results_dir, f"{resume}.csv")):
        latest = ", ".join(ids[:5]) if ids else "none"
        raise ValueError(f"--resume {resume!r}: no such run in {results_dir!r}; latest runs: {latest} "
                         "(or --resume last)")
    return resume


def _argv() -> list:
    """The words after ``bench`` of this invocation (for the command that resumes it)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return list(obj.get("argv", [])) if isinstance(obj, dict) else []


def _stopped(cfg_path: str, hint: str, signum_name: str) -> None:
    click.echo(f"\nstopped by {signum_name}: every finished row is in {cfg_path}; continue with\n  {hint}", err=True)


# What `bench run` measures when --heads / --backbone are not given. Training on a CPU gets a small backbone and
# the attention heads at CPU-scale widths (the paper's D=768, FFN 2048 would cost more than the backbone); cost
# runs and GPU runs get the paper's heads.
CPU_SMALL = "embed=128, ffn=512, heads=4"
DEFAULT_HEADS = "gap,txdec,mldecoder"
DEFAULT_HEADS_CPU_TRAINING = f"gap,txdec({CPU_SMALL}),mldecoder({CPU_SMALL})"
DEFAULT_BACKBONE = "resnet50"
# Training on a CPU with no --backbone: a real ImageNet-pretrained backbone whose weights install with headbench
# (bench.pretrained), frozen, its features of each image computed once and shared by every head and seed.
DEFAULT_BACKBONE_CPU_TRAINING = "tf_efficientnet_lite0"
DEFAULT_CPU_TRAINING = dict(pretrained=True, protocol="probe", img_size=128)


def run_command(heads, backbones, img_size, num_classes, batch_sizes, device, dtype, channels_last, compile_,
                cost_only, no_timing, min_time, dataset, data_root, protocol, epochs, seeds, lr, train_batch_size, workers,
                pretrained, checkpoint, results_dir, cache_dir, resume, executor, ray_address, plot,
                threads=None, memory=None, train_timing=None) -> None:
    from .fmt import parse_ints as _ints
    from .runner import RunConfig, pending_cells, plan_cells, resolve_device, run

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("bench run does not run under torchrun (every process would write rows); for "
                         "data-parallel fine-tuning use `torchrun --nproc_per_node=N -m bench.distributed ...`")
    from .spec import parse_spec

    ds_name = parse_spec(dataset).name if dataset else "scenes"
    defaults = DATASET_DEFAULTS.get(ds_name, dict(img_size=224, epochs=10))
    asked_device = device
    device = resolve_device(device)  # once: the header, the defaults below and every row name the same device
    cpu_training = not cost_only and device == "cpu"
    if heads is None:
        heads = DEFAULT_HEADS_CPU_TRAINING if cpu_training else DEFAULT_HEADS
    default_run = backbones is None and cpu_training  # the pretrained probe run, unless options say otherwise
    if backbones is None:
        backbones = DEFAULT_BACKBONE_CPU_TRAINING if cpu_training else DEFAULT_BACKBONE
    if pretrained is None:
        pretrained = default_run and DEFAULT_CPU_TRAINING["pretrained"]
    if protocol is None:
        protocol = DEFAULT_CPU_TRAINING["protocol"] if default_run else "finetune"
    if workers is None:
        workers = defaults.get("workers", 2)
    if img_size is None:
        img_size = 224 if cost_only else (DEFAULT_CPU_TRAINING["img_size"] if default_run and ds_name == "scenes"
                                          else defaults["img_size"])
    cfg = RunConfig(
        heads=split_specs(heads), backbones=split_specs(backbones), img_size=img_size, num_classes=num_classes,
        batch_sizes=_ints(batch_sizes, "--batch-sizes"), device=device, dtype=dtype, channels_last=channels_last,
        compile=compile_, cost_only=cost_only, timing=not no_timing,
        memory=cost_only if memory is None else memory,  # a training run is about accuracy: opt in
        train_timing=cost_only if train_timing is None else train_timing, min_time_s=min_time, dataset=dataset, data_root=data_root,
        protocol=protocol, epochs=epochs if epochs is not None else defaults["epochs"],
        seeds=_ints(seeds, "--seeds"), lr=lr, train_batch_size=train_batch_size, workers=workers,
        pretrained=pretrained, checkpoint=checkpoint, results_dir=results_dir, cache_dir=cache_dir, threads=threads,
        run_id=resolve_resume(resume, results_dir))
    validate(cfg)
    ex = make_executor(executor, ray_address)
    all_cells = plan_cells(cfg)
    cells = pending_cells(cfg, all_cells)
    per_cell = _print_header(cfg, all_cells, cells, asked_device, plot)
    if not cells:
        click.echo("Nothing to run: every cell of this run is already in " + cfg.results_path)
    t0 = time.time()
    bar, on_cell = _progress_bar(cells, per_cell)

    def progress(msg: str):
        bar.set_postfix_str(msg[:60])

    errors = []

    def on_row(row):
        if row.get("status") == "error":
            errors.append(row)

    from .interrupt import Interrupted, handle_signals, resume_hint, with_resume

    try:
        with handle_signals():
            run(cfg, executor=ex, on_cell=on_cell, on_row=on_row, progress=progress)
    except Interrupted as stop:
        bar.close()
        _stopped(cfg.results_path, resume_hint(_argv(), lambda a: with_resume(a, cfg.run_id)), str(stop))
        raise SystemExit(stop.exit_code)
    finally:
        bar.close()
    elapsed = time.time() - t0
    from .results import read_results

    df = read_results([cfg.results_path]) if os.path.exists(cfg.results_path) else None
    if df is not None and len(df):
        click.echo("\n" + summary_text(df))
    click.echo(f"\nRun {cfg.run_id}: {len(cells)} cells in {elapsed:.0f} s; rows in {cfg.results_path}")
    if errors:
        click.echo(f"{len(errors)} rows failed; first error: {errors[0].get('error', '')[:300]}", err=True)
    if plot and df is not None and len(df):
        from .plots import plot_results

        out = os.path.join(os.path.dirname(cfg.results_dir.rstrip("/")) or ".", "plots", cfg.run_id)
        files = plot_results(df, out)
        if files:
            click.echo("Plots: " + ", ".join(files))
    if errors:
        raise SystemExit(1)


def make_executor(name: str, address: Optional[str]):
    if name == "local":
        from .runner import LocalExecutor
        return LocalExecutor()
    from .executors import RayExecutor
    return RayExecutor(address)


def _progress_bar(cells, per_cell, disable=None):
    """A bar in estimated seconds: each finished cell advances it by its own estimate, so its rate is the measured
    pace against the estimate and its ETA (tqdm's remaining time) corrects itself as cells finish. Returns
    (bar, on_cell)."""
    from tqdm import tqdm

    from .estimate import cell_key

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
    from .estimate import AFTER_CELLS_S, PLOTS_S, duration, estimate_cells, faster_ways

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
    from .fmt import format_table as _table
    from .tables import fmt_interval, fmt_pm, summarize

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
        metric = next(r["metric"] for r in rows if "metric" in r)
        n = max(r.get("n_seeds", 0) for r in rows)
        cols += ["acc", "ema", "delta", "verdict"]
        heads += [f"{metric} (n={n})", f"{metric} EMA", "vs first head, paired (95%)", "difference"]
    text = _table(out, cols, heads)
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
    import pandas as pd

    cols = ("mem_infer_peak_mib", "mem_train_peak_mib", "train_step_ms_p50")
    measured = any(c in df.columns and df[c].notna().any() for c in cols)
    if not measured and not ("train_status" in df.columns and (df["train_status"].astype(str) == "oom").any()):
        return {}
    ok = df[df["status"].astype(str) == "ok"]
    out = {}
    for keys, g in ok.groupby(list(group), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        bs = pd.to_numeric(g["batch_size"], errors="coerce")
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


def results_command(paths, results_dir, where, columns, last_run, export_timm, as_csv) -> None:
    from .fmt import format_table as _table
    from .results import read_results, result_files

    files = result_files(paths or None, results_dir)
    if last_run and files:
        files = [max(files, key=os.path.getmtime)]
    df = read_results(files) if files else None
    if df is None or not len(df):
        click.echo(f"No results in {', '.join(paths) or results_dir}. Run `bench run` first.")
        return
    import fnmatch

    for cond in where:
        if "=" not in cond:
            raise ValueError(f"--where takes COLUMN=VALUE, got {cond!r}")
        col, val = cond.split("=", 1)
        if col not in df.columns:
            from .registry import unknown_message
            raise ValueError(unknown_message("column", col, df.columns))
        df = df[df[col].astype(str).map(lambda s: fnmatch.fnmatchcase(s, val))]
    if export_timm:
        export_timm_csv(df, export_timm)
        click.echo(f"wrote {len(df)} rows in timm's benchmark format to {export_timm}")
        return
    cols = columns.split(",") if columns else [c for c in (
        "run_id", "backbone", "head", "img_size", "batch_size", "dataset", "seed", "params_head", "gmacs_head",
        "gmacs_total", "latency_ms_p50", "throughput_img_s", "map", "top1", "status") if df[c].notna().any()]
    for c in cols:
        if c not in df.columns:
            from .registry import unknown_message
            raise ValueError(unknown_message("column", c, df.columns))
    if as_csv:
        click.echo(df[cols].to_csv(index=False).rstrip())
    else:
        click.echo(_table(df[cols].to_dict("records"), cols))
        click.echo(f"\n{len(df)} rows from {len(files)} file(s)")


def export_timm_csv(df, path: str) -> None:
    """timm's benchmark.py columns: model, infer_samples_per_sec, infer_step_time, infer_batch_size,
    infer_img_size, infer_gmacs, param_count (M), and its train columns train_samples_per_sec,
    train_step_time (ms), train_batch_size, train_img_size (empty where the training step was not timed)."""
    import pandas as pd

    train = df["train_step_ms_p50"].notna() if "train_step_ms_p50" in df.columns else False
    out = df[df["latency_ms_p50"].notna() | train].copy()
    timed = out["train_step_ms_p50"].notna() if "train_step_ms_p50" in out.columns else \
        pd.Series(False, index=out.index)
    col = (lambda c: out[c] if c in out.columns else pd.Series(float("nan"), index=out.index))  # noqa: E731
    timm_df = pd.DataFrame({
        "model": out["backbone"] + "+" + out["head"],
        "infer_samples_per_sec": out["throughput_img_s"].astype(float).round(2),
        "infer_step_time": out["latency_ms_p50"].astype(float).round(3),
        "infer_batch_size": out["batch_size"],
        "infer_img_size": out["img_size"],
        "infer_gmacs": out["gmacs_total"].astype(float).round(3),
        "param_count": (out["params_total"].astype(float) / 1e6).round(2),
        "train_samples_per_sec": col("train_img_s").astype(float).round(2),
        "train_step_time": col("train_step_ms_p50").astype(float).round(3),
        "train_batch_size": col("train_batch_size").where(timed),
        "train_img_size": out["img_size"].where(timed),
    })
    timm_df.to_csv(path, index=False)


def plot_command(paths, results_dir, last_run, out) -> None:
    from .plots import plot_results
    from .results import read_results, result_files

    files = result_files(paths or None, results_dir)
    if last_run and files:
        files = [max(files, key=os.path.getmtime)]
    df = read_results(files)
    if not len(df):
        raise ValueError(f"no result rows in {', '.join(paths) or results_dir}; run `bench run` first")
    written = plot_results(df, out)
    for f in written:
        click.echo(f)


def check_command(baseline, paths, results_dir, tols, metrics=None, allow_missing=False) -> int:
    from .check import compare, format_table, has_regression, parse_tolerances, summarize
    from .results import read_results

    base = read_results([baseline])
    res = read_results(list(paths) or None, results_dir)
    table = compare(res, base, parse_tolerances(list(tols)) or None,
                    metrics=[m.strip() for m in metrics.split(",")] if metrics else None)
    if allow_missing and len(table) and (table["status"] == "missing").all():  # a check that compared nothing
        raise ValueError(f"nothing compared: none of the {len(table)} baseline comparisons has a matching results "
                         "row (--allow-missing accepts some missing rows, not all); check --results and the "
                         "baseline's identifiers")
    click.echo(format_table(table))
    click.echo("\n" + summarize(table))
    if has_regression(table, missing_ok=allow_missing):
        click.echo("REGRESSION: a metric is worse than the baseline beyond its tolerance, a cost changed, or a "
                   "baseline row has no result (see the status column)", err=True)
        return 1
    click.echo("\nOK: no regression against " + baseline)
    return 0


def baseline_command(paths, out, metrics) -> None:
    from .check import make_baseline
    from .results import read_results, result_files

    files = result_files(list(paths))
    df = make_baseline(read_results(files), metrics=metrics)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    df.to_csv(out, index=False, float_format="%.6g")
    acc = [m for m in metrics if m in df.columns]
    click.echo(f"wrote {len(df)} baseline rows to {out} from {len(files)} file(s); accuracy: "
               + (", ".join(f"{m} (mean, {m}_std, {m}_rerun_std)" for m in acc) or "none"))


def study_command(name, dataset, data_root, backbones, img_size, cost_only, no_timing, seeds, epochs, protocol, batch_sizes,
                  device, pretrained, checkpoint, workers, results_dir, executor, ray_address,
                  threads=None) -> None:
    """Run every configuration of a study into ``<results-dir>/study-<name>.csv``; finished cells are skipped."""
    from tqdm import tqdm

    from .fmt import parse_ints as _ints
    from .results import read_results
    from .runner import pending_cells, plan_cells
    from .studies import get_study

    study = get_study(name)
    overrides = dict(dataset=dataset, data_root=data_root, img_size=img_size, cost_only=cost_only or None,
                     timing=False if no_timing else None,
                     epochs=epochs, protocol=protocol, device=device, pretrained=pretrained or None,
                     checkpoint=checkpoint, workers=workers, threads=threads,
                     backbones=split_specs(backbones) if backbones else None,
                     seeds=_ints(seeds, "--seeds") if seeds else None,
                     batch_sizes=_ints(batch_sizes, "--batch-sizes") if batch_sizes else None)
    configs = study.configs(results_dir=results_dir, **overrides)
    for cfg in configs:
        validate(cfg)
    plan = [(cfg, pending_cells(cfg, plan_cells(cfg))) for cfg in configs]
    todo = sum(len(c) for _, c in plan)
    total = sum(len(plan_cells(cfg)) for cfg in configs)
    path = configs[0].results_path
    claim = f"claim {study.claim}" if study.claim is not None else "beyond the paper's claims"
    click.echo(f"bench study {name}: {claim}: {study.statement}\n"
               f"  {len(configs)} configurations, {total} cells, {todo} to run ({total - todo} already in {path})\n"
               f"  device {', '.join(sorted({cfg.device for cfg in configs}))}")
    try:
        from .estimate import duration, estimate_seconds

        est = sum(estimate_seconds(cfg, cells, plots=False) for cfg, cells in plan if cells)
        click.echo(f"  estimate ~{duration(est)} on this machine (from quick measurements of its cells' work)")
    except Exception as e:  # an estimate is a courtesy; never fail a study for it
        click.echo(f"  estimate none ({type(e).__name__}: {str(e).strip()[:80]})")
    from .executors import run_many

    ex = make_executor(executor, ray_address)
    errors = []
    t0 = time.time()
    bar = tqdm(total=todo, unit="cell", dynamic_ncols=True, disable=None)
    from .interrupt import Interrupted, handle_signals, resume_hint

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
