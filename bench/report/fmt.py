"""The one formatter of tables and numbers, shared by the CLI, the commands and the report: fixed-width text
tables (``format_table``, laid out by ``layout``), Markdown tables (``md_table``), an interval (``fmt_interval``),
a mean with its spread (``fmt_pm``), integer lists.

Table rules (``format_table``), decided per column so that a column reads at a glance:
  - a column whose values are all whole numbers (batch sizes, seeds, counts; also floats such as 1.0 that pandas
    made from integers) prints them as integers;
  - parameter counts (columns named ``params*``) print with a unit: ``4.66K``, ``289K``, ``23.5M``;
  - other numbers get ``SIG_DIGITS`` significant digits with the same number of decimals down the column
    (``0.0369``, ``0.0490``); a column spanning more than three decades, or holding values under 1e-3, prints
    each value with ``SIG_DIGITS`` significant digits in its own notation (``4.61e-06``, ``0.0121``);
  - missing values (None, NaN) are blank; text is left-aligned, numbers right-aligned.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Iterable, List, Optional, Sequence

SIG_DIGITS = 3
COUNT_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def parse_ints(text: str, what: str) -> List[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise ValueError(f"{what} is empty")
    return vals


def _number(v) -> Optional[float]:
    """The value as a float when it is a real number (not a bool, not missing), else None."""
    if isinstance(v, bool) or not isinstance(v, Real):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _missing(v) -> bool:
    return v is None or (isinstance(v, Real) and not isinstance(v, bool) and math.isnan(float(v)))


def format_count(n: float) -> str:
    """A count with a unit and three significant digits: 512, 4.66K, 289K, 23.5M, 1.20G."""
    a = abs(n)
    for scale, unit in COUNT_UNITS:
        if a >= scale * 0.9995:  # what rounds to 1.00 of the unit takes it
            x = n / scale
            return f"{x:.{_decimals(max(abs(x), 1.0))}f}{unit}"  # 0.9996 of a unit prints as 1.00 of it
    return f"{int(round(n))}" if float(n).is_integer() or a >= 100 else f"{n:.{SIG_DIGITS}g}"


def _decimals(v: float) -> int:
    """Decimals that give ``v`` SIG_DIGITS significant digits (0 for numbers of SIG_DIGITS digits or more)."""
    if v == 0:
        return 0
    return max(0, SIG_DIGITS - 1 - int(math.floor(math.log10(abs(v)))))


def format_column(values: Sequence, column: str = "") -> List[str]:
    """Format one column's values by the module's rules (see the docstring)."""
    nums = [_number(v) for v in values]
    present = [x for x in nums if x is not None]
    if not present:
        return ["" if _missing(v) else str(v) for v in values]
    if column.startswith("params"):
        fmt = format_count
    elif all(x.is_integer() for x in present) and all(isinstance(v, Integral) or abs(v) < 2 ** 53
                                                      for v, x in zip(values, nums) if x is not None):
        def fmt(x):
            return str(int(x))
    else:
        nonzero = [abs(x) for x in present if x != 0]
        spread = nonzero and (min(nonzero) < 1e-3 or max(nonzero) / min(nonzero) > 1e3)
        if spread:
            def fmt(x):
                return f"{x:.{SIG_DIGITS}g}"
        else:
            d = max((_decimals(x) for x in nonzero), default=0)

            def fmt(x):
                return f"{x:.{d}f}"
    return [fmt(x) if x is not None else ("" if _missing(v) else str(v)) for v, x in zip(values, nums)]


def format_table(rows: List[dict], columns: List[str], headers: Optional[List[str]] = None) -> str:
    """A plain fixed-width table, each column formatted by ``format_column``."""
    headers = headers or columns
    cols = [format_column([r.get(c) for r in rows], c) for c in columns]
    return layout(headers, [[col[i] for col in cols] for i in range(len(rows))])


def layout(headers: Sequence[str], cells: Sequence[Sequence[str]], right: Optional[Sequence[bool]] = None) -> str:
    """Formatted cells as a fixed-width table: a header line, a rule of dashes, one line per row, columns two
    spaces apart. ``right[i]`` right-aligns column i; by default a cell is right-aligned when it reads as a
    number (``is_numeric``)."""
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def align(v: str, i: int, w: int) -> str:
        return v.rjust(w) if (right[i] if right is not None else is_numeric(v)) else v.ljust(w)

    out = ["  ".join(align(h, i, w) for i, (h, w) in enumerate(zip(headers, widths))),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(align(v, i, w) for i, (v, w) in enumerate(zip(row, widths))) for row in cells]
    return "\n".join(s.rstrip() for s in out)


def is_numeric(s: str) -> bool:
    try:
        float(s.replace("±", "").split()[0].rstrip("KMGT"))
        return True
    except (ValueError, IndexError):
        return False


def format_cell(v) -> str:
    """One value alone, by the same rules as a column of one."""
    return format_column([v])[0]


def fmt_interval(mean, low, high, digits=1) -> str:
    """``+1.2 [-0.3, +2.7]``: a difference and its interval (the interval left out when not finite)."""
    if mean is None or mean != mean:
        return ""
    if low is None or low != low or high is None or high != high:
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def fmt_pm(mean, std, digits=1) -> str:
    if mean is None or mean != mean:
        return ""
    if std is None or std != std:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def md_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A Markdown table: one header line, one separator, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(v) for v in r) + " |")
    return "\n".join(lines)
