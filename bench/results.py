"""The results store: one tidy table, one row per measured cell, appended as each row is made.

Columns come in three blocks: identifiers, measurements (units in their names), environment. ``COLUMNS`` is
the stable schema users script against; a file written by a newer version may have more columns, never fewer.
Files live in ``results/runs/<run_id>.csv`` and are only ever appended to.
"""
from __future__ import annotations

import csv
import datetime as _dt
import glob
import os
import platform
import subprocess
import uuid
from typing import Dict, Iterable, List, Optional

ID_COLUMNS = [
    "run_id", "backbone", "head", "img_size", "num_classes", "batch_size", "device", "dtype",
    "channels_last", "compile", "dataset", "protocol", "epochs", "seed",
]
COST_COLUMNS = [
    "params_total", "params_trainable", "params_backbone", "params_head",
    "gmacs_total", "gmacs_backbone", "gmacs_head", "gflops_total", "gflops_backbone", "gflops_head",
    "gmacs_fvcore_total", "gmacs_fvcore_head", "uncounted_ops",
    "latency_ms_p50", "latency_ms_iqr", "latency_n", "throughput_img_s",
    "backbone_ms_p50", "backbone_ms_iqr", "head_ms_p50", "head_ms_iqr", "batch_size_requested",
    # Peak memory of one step above what was held before it (bench.memory), the backbone alone beside it.
    "mem_infer_peak_mib", "mem_infer_backbone_mib", "mem_infer_reserved_mib",
    "mem_train_peak_mib", "mem_train_backbone_mib", "mem_train_reserved_mib",
    # The training step (forward, loss, backward, AdamW step) at train_batch_size; train_status says whether it
    # fitted ("ok", "oom": out of memory even at batch 1, "error"; the reason in `error`).
    "train_step_ms_p50", "train_step_ms_iqr", "train_step_n", "train_img_s",
    "train_step_backbone_ms_p50", "train_step_backbone_ms_iqr", "train_batch_size", "train_status",
]
ACCURACY_COLUMNS = [
    "map", "map_ema", "cp", "cr", "cf1", "op", "or", "of1", "f1_at_3", "f1_at_5", "top1", "top1_ema", "top5",
    "zsl_map", "zsl_map_ema", "gzsl_map", "train_s", "train_images", "eval_split", "eval_images",
    "map_no_positive_policy", "map_no_positive_classes", "skipped_images",
]
# ``source`` says where a row comes from when it was not measured by this suite (the paper's tables).
ENV_COLUMNS = [
    "status", "error", "torch_version", "timm_version", "bench_version", "cpu", "gpu", "threads", "world_size",
    "git_commit", "hostname", "timestamp", "source",
]
COLUMNS = ID_COLUMNS + COST_COLUMNS + ACCURACY_COLUMNS + ENV_COLUMNS
# What identifies a measurement, for matching rows across runs (bench check, resuming studies).
KEY_COLUMNS = [c for c in ID_COLUMNS if c != "run_id"]

DEFAULT_RESULTS_DIR = os.path.join("results", "runs")


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _git_commit() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return ""


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_ENV_CACHE: Dict[str, str] = {}


def environment(device: str = "cpu") -> Dict[str, object]:
    """The environment columns of a row (versions, hardware, threads, commit, time)."""
    import torch
    import timm

    from . import __version__

    if not _ENV_CACHE:
        _ENV_CACHE.update(torch_version=torch.__version__, timm_version=timm.__version__, bench_version=__version__,
                          cpu=_cpu_name(), git_commit=_git_commit(), hostname=platform.node())
    env = dict(_ENV_CACHE)
    env["gpu"] = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else ""
    env["threads"] = torch.get_num_threads()
    env["timestamp"] = _dt.datetime.now().isoformat(timespec="seconds")
    return env


class ResultsWriter:
    """Appends rows to a CSV file as they are made (flushed at once, so a crash loses nothing written)."""

    def __init__(self, path: str):
        self.path = path
        directory = os.path.dirname(path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            exists = os.path.exists(path) and os.path.getsize(path) > 0
            self._file = open(path, "a", newline="")
        except OSError as e:
            raise ValueError(f"cannot write results to {path!r}: {e.strerror}") from None
        if exists:
            with open(path, newline="") as f:
                self.columns = next(csv.reader(f))
        else:
            self.columns = list(COLUMNS)
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="raise")
        if not exists:
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: Dict[str, object]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)}; the schema is bench.results.COLUMNS")
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, bool):
        return str(v)
    return v


def result_files(paths: Optional[Iterable[str]] = None, results_dir: str = DEFAULT_RESULTS_DIR) -> List[str]:
    """Expand files, directories and globs into CSV paths (default: every file in the results dir)."""
    paths = list(paths or [results_dir])
    out: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(glob.glob(os.path.join(p, "*.csv")))
        elif any(ch in p for ch in "*?["):
            out += sorted(glob.glob(p))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise ValueError(f"no results at {p!r}")
    return out


def read_results(paths: Optional[Iterable[str]] = None, results_dir: str = DEFAULT_RESULTS_DIR):
    """All rows of the given result files as one pandas DataFrame with the schema's columns."""
    import pandas as pd

    files = result_files(paths, results_dir)
    frames = [pd.read_csv(f, dtype={"run_id": str, "head": str, "backbone": str}, keep_default_na=True)
              for f in files if os.path.getsize(f) > 0]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    return df
