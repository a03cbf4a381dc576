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

from .. import __version__
from .interrupt import deferred

ID_COLUMNS = [
    "run_id", "backbone", "head", "img_size", "num_classes", "batch_size", "device", "dtype",
    "channels_last", "compile", "dataset", "protocol", "epochs", "seed",
    "weights",  # "pretrained" (ImageNet weights) or "" (random initialisation: rows written before it have none)
]
COST_COLUMNS = [
    "params_total", "params_trainable", "params_backbone", "params_head",
    "gmacs_total", "gmacs_backbone", "gmacs_head", "gflops_total", "gflops_backbone", "gflops_head",
    "gmacs_fvcore_total", "gmacs_fvcore_head", "uncounted_ops",
    "latency_ms_p50", "latency_ms_iqr", "latency_n", "throughput_img_s",
    "backbone_ms_p50", "backbone_ms_iqr", "head_ms_p50", "head_ms_iqr", "batch_size_requested",
    # Peak memory of one step above what was held before it (bench.measure.memory), the backbone alone beside it.
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
    # The evaluation split's chance level (a constant predictor, ``bench.train.evaluation.chance_metrics``) and how far
    # training moved the head's queries (||q - q0|| / ||q0||; 0 for fixed queries, empty without queries).
    "map_chance", "zsl_map_chance", "top1_chance", "query_shift",
    # The training split's loss in the last epoch (mean per batch): how well a recipe fits, read without the
    # evaluation split.
    "train_loss",
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


def normalize_id(value) -> str:
    """An identifier as comparable text: empty for missing, ints without '.0', booleans lower-case, so that
    ``448``, ``448.0`` and ``"448"`` are one value, as are ``True`` and ``"true"``, and NaN and ``""``."""
    import math

    if value is None:
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        value = float(value)
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int) or type(value).__name__.startswith("int"):
        return str(int(value))
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    if text.lower() in ("nan", "none", "<na>"):
        return ""
    try:
        return normalize_id(float(text))
    except ValueError:
        return text


def weights_label(cfg) -> str:
    """The ``weights`` identifier of a run's rows: "pretrained" for ImageNet weights, "" for a random start."""
    return "pretrained" if cfg.pretrained else ""


def row_key(row) -> tuple:
    """What identifies a measurement (``KEY_COLUMNS``, normalised): two ok rows of one file never share it."""
    get = row.get if hasattr(row, "get") else (lambda c: row[c])
    return tuple(normalize_id(get(c)) for c in KEY_COLUMNS)




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


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform module says."""
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
    import timm
    import torch
    if not _ENV_CACHE:
        _ENV_CACHE.update(torch_version=torch.__version__, timm_version=timm.__version__, bench_version=__version__,
                          cpu=cpu_name(), git_commit=_git_commit(), hostname=platform.node())
    env = dict(_ENV_CACHE)
    env["gpu"] = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else ""
    env["threads"] = torch.get_num_threads()
    env["timestamp"] = _dt.datetime.now().isoformat(timespec="seconds")
    return env


class DuplicateRowError(ValueError):
    """An ok row whose key the results file already holds: a finished measurement was about to be counted twice."""


def _ok_keys(path: str) -> set:
    with open(path, newline="") as f:
        return {row_key(r) for r in csv.DictReader(f) if r.get("status") == "ok"}


class ResultsWriter:
    """Appends rows to a CSV file as they are made (flushed at once, so a crash loses nothing written).

    It refuses an ok row whose key (``row_key``) the file already holds (``DuplicateRowError``): a resumed run
    never counts a measurement twice. Error rows may repeat (a cell that failed, then failed again).
    """

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
            self._keys = _ok_keys(path)
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) not in b"\r\n":  # a row cut mid-line (crash, power loss): new rows start a line
                    self._file.write("\r\n")
        else:
            self.columns = list(COLUMNS)
            self._keys = set()
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="raise")
        if not exists:
            self._writer.writeheader()
            self._file.flush()

    def holds(self, row: Dict[str, object]) -> bool:
        """Whether the file already has an ok row with this row's key."""
        return row_key(row) in self._keys

    def write(self, row: Dict[str, object]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)}; the schema is bench.run.results.COLUMNS")
        if row.get("status") == "ok":
            key = row_key(row)
            if key in self._keys:
                shown = ", ".join(f"{c}={v}" for c, v in zip(KEY_COLUMNS, key) if v)
                raise DuplicateRowError(f"{self.path} already holds an ok row for {shown}: refusing to write it "
                                        "twice")
            self._keys.add(key)
        with deferred():  # a stop signal waits until the row is on disk
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


def _whole_rows(path: str):
    """``path`` itself when each of its rows has as many fields as its header; else its text without the rows that
    do not (a row cut mid-line by a crash or power loss, alone or with a later row appended onto it), each dropped
    with a warning line on stderr naming the file and line: pandas would read a short row as a row of empty values
    without a word."""
    import io
    import sys

    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        kept, cut, line = [header], [], reader.line_num + 1
        for fields in reader:
            if fields and len(fields) != len(header):
                cut.append((line, len(fields)))
            elif fields:
                kept.append(fields)
            line = reader.line_num + 1
    if not cut:
        return path
    for line, n in cut:
        print(f"warning: {path}: line {line} has {n} fields where the header has {len(header)} (cut mid-line, as "
              "by a crash or power loss): dropped", file=sys.stderr)
    text = io.StringIO()
    csv.writer(text).writerows(kept)
    text.seek(0)
    return text


def read_results(paths: Optional[Iterable[str]] = None, results_dir: str = DEFAULT_RESULTS_DIR):
    """All rows of the given result files as one pandas DataFrame with the schema's columns. A row with more or
    fewer fields than its file's header (cut mid-line) is dropped with a warning on stderr (``_whole_rows``)."""
    import pandas as pd

    files = result_files(paths, results_dir)
    frames = [pd.read_csv(_whole_rows(f), dtype={"run_id": str, "head": str, "backbone": str}, keep_default_na=True)
              for f in files if os.path.getsize(f) > 0]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    return df
