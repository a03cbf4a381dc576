"""One view of result rows (a pandas DataFrame in the results schema, ``bench.run.results.COLUMNS``): numeric
columns, ok and failed rows, accuracy and cost rows, a head's label and family. Statistics, the report, plots,
regression checks and the CLI read rows through these functions, so that "a row that counts" means one thing.

* An **ok** row has ``status`` "ok" (a frame without a status column is all ok: tables written by hand);
  a **failed** row has ``status`` "error".
* An **accuracy** row is an ok row of a trained-and-evaluated cell: it carries a ``seed``; a cell measured twice
  (same identifiers) counts once, the latest row.
* A **cost** row is an ok row of a cost cell: it carries a ``batch_size`` (the batch timed, 1 when not timing).
* A head's **family** is its label with full decoding (``groups=<num_classes>``) written ``groups=N``, so that
  one series spans every number of classes.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..run.results import KEY_COLUMNS, row_key

OK, ERROR = "ok", "error"


def num(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]`` as floats (NaN where missing or not a number; all NaN when the column is absent)."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce")


def status_is(df: pd.DataFrame, status: str) -> pd.Series:
    """A mask of the rows whose ``status`` is ``status`` (surrounding blanks and case ignored)."""
    if "status" not in df.columns:
        return pd.Series(status == OK, index=df.index)
    return df["status"].astype(str).str.strip().str.lower() == status


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[status_is(df, OK)] if len(df) else df


def failed_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[status_is(df, ERROR)] if len(df) else df


def accuracy_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Ok rows that carry a seed, one per identifiers (the latest)."""
    if not len(df):
        return df
    ok = ok_rows(df)
    acc = ok[num(ok, "seed").notna()]
    return acc.drop_duplicates([c for c in KEY_COLUMNS if c in acc.columns], keep="last")


def cost_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Ok rows that carry a batch size (cost cells)."""
    if not len(df):
        return df
    ok = ok_rows(df)
    return ok[num(ok, "batch_size").notna()]


def unique_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of ``df`` with one row per key (the last one written), so a file that holds a measurement
    twice (written by an older version, or two files read together) counts it once; other rows are dropped."""
    if not len(df):
        return df
    ok = ok_rows(df)
    keys = [row_key(r) for r in ok.to_dict("records")]
    last = {k: i for i, k in enumerate(keys)}
    return ok.iloc[sorted(last.values())]


def head_family(head: str, num_classes) -> str:
    """The head label with ``groups=<num_classes>`` written ``groups=N`` (full decoding at every N)."""
    try:
        n = int(float(num_classes))
    except (TypeError, ValueError):
        return str(head)
    return re.sub(rf"\bgroups={n}\b", "groups=N", str(head))


def metric_of(df: pd.DataFrame, candidates=("map", "top1")):
    """The accuracy column rows lead with: the first of ``candidates`` (mAP for multi-label, top-1 for
    single-label) that has a value; None without any."""
    for m in candidates:
        if m in df.columns and num(df, m).notna().any():
            return m
    return None
