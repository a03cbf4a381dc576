"""Plain-text formatting shared by the CLI, the commands and the report: fixed-width tables and integer lists."""
from __future__ import annotations

from typing import List, Optional


def parse_ints(text: str, what: str) -> List[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise ValueError(f"{what} is empty")
    return vals


def format_table(rows: List[dict], columns: List[str], headers: Optional[List[str]] = None) -> str:
    """A plain fixed-width table."""
    headers = headers or columns
    cells = [[format_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.rjust(w) if is_numeric(v) else v.ljust(w) for v, w in zip(vals, widths))
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(s.rstrip() for s in out)


def is_numeric(s: str) -> bool:
    try:
        float(s.replace("±", "").split()[0])
        return True
    except (ValueError, IndexError):
        return False


def format_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return ""
        if abs(v) >= 100:
            return f"{v:.1f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)
