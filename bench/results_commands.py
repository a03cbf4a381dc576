"""What the CLI does with result files: ``bench results`` (list, filter, export), ``bench plot``, ``bench check``
(regression check against a baseline) and ``bench check --make-baseline``. Kept apart from the running commands
(``bench.commands``) so that these start without loading torch or timm."""
from __future__ import annotations

import fnmatch
import os
from typing import List, Optional

import click
import pandas as pd

from .analysis.check import (compare, format_table as check_table, has_regression, make_baseline, parse_tolerances,
                             summarize as check_summary)
from .registry import unknown_message
from .report.fmt import format_table
from .report.plots import plot_results
from .run.results import read_results, result_files


def results_command(paths, results_dir, where, columns, last_run, export_timm, as_csv) -> None:
    files = result_files(paths or None, results_dir)
    if last_run and files:
        files = [max(files, key=os.path.getmtime)]
    df = read_results(files) if files else None
    if df is None or not len(df):
        click.echo(f"No results in {', '.join(paths) or results_dir}. Run `bench run` first.")
        return
    for cond in where:
        if "=" not in cond:
            raise ValueError(f"--where takes COLUMN=VALUE, got {cond!r}")
        col, val = cond.split("=", 1)
        if col not in df.columns:
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
            raise ValueError(unknown_message("column", c, df.columns))
    if as_csv:
        click.echo(df[cols].to_csv(index=False).rstrip())
    else:
        click.echo(format_table(df[cols].to_dict("records"), cols))
        click.echo(f"\n{len(df)} rows from {len(files)} file(s)")


def export_timm_csv(df, path: str) -> None:
    """timm's benchmark.py columns: model, infer_samples_per_sec, infer_step_time, infer_batch_size,
    infer_img_size, infer_gmacs, param_count (M), and its train columns train_samples_per_sec,
    train_step_time (ms), train_batch_size, train_img_size (empty where the training step was not timed)."""
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
    base = read_results([baseline])
    res = read_results(list(paths) or None, results_dir)
    table = compare(res, base, parse_tolerances(list(tols)) or None,
                    metrics=[m.strip() for m in metrics.split(",")] if metrics else None)
    if allow_missing and len(table) and (table["status"] == "missing").all():  # a check that compared nothing
        raise ValueError(f"nothing compared: none of the {len(table)} baseline comparisons has a matching results "
                         "row (--allow-missing accepts some missing rows, not all); check --results and the "
                         "baseline's identifiers")
    click.echo(check_table(table))
    click.echo("\n" + check_summary(table))
    if has_regression(table, missing_ok=allow_missing):
        click.echo("REGRESSION: a metric is worse than the baseline beyond its tolerance, a cost changed, or a "
                   "baseline row has no result (see the status column)", err=True)
        return 1
    click.echo("\nOK: no regression against " + baseline)
    return 0


def baseline_command(paths, out, metrics) -> None:
    files = result_files(list(paths))
    df = make_baseline(read_results(files), metrics=metrics)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    df.to_csv(out, index=False, float_format="%.6g")
    acc = [m for m in metrics if m in df.columns]
    click.echo(f"wrote {len(df)} baseline rows to {out} from {len(files)} file(s); accuracy: "
               + (", ".join(f"{m} (mean, {m}_std, {m}_rerun_std)" for m in acc) or "none"))
