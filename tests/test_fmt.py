"""Table formatting rules: integers as integers, parameter counts with units, the same decimals down a column,
three significant digits, blanks for missing values."""
from __future__ import annotations

import numpy as np

from bench.report.fmt import format_cell, format_column, format_count, format_table


def test_whole_numbers_print_as_integers_even_as_floats():
    assert format_column([1.0, 32.0, float("nan")], "batch_size") == ["1", "32", ""]
    assert format_column([np.int64(0), np.int64(2)], "seed") == ["0", "2"]
    assert format_cell(7) == "7" and format_cell(True) == "True" and format_cell(None) == ""


def test_params_print_with_units():
    assert [format_count(n) for n in (512, 4656, 289_000, 999_600, 23_500_000, 1.2e9)] == \
        ["512", "4.66K", "289K", "1.00M", "23.5M", "1.20G"]
    assert format_column([4656.0, 289_000.0], "params_head") == ["4.66K", "289K"]


def test_a_column_keeps_three_significant_digits_and_its_decimals():
    assert format_column([0.0369, 0.049, 0.0453]) == ["0.0369", "0.0490", "0.0453"]
    assert format_column([587.7, 501.1, 536.4]) == ["588", "501", "536"]
    assert format_column([2.951, 3.84, 12.29]) == ["2.95", "3.84", "12.29"]
    # over three decades, or tiny values: each in its own notation, three significant digits
    assert format_column([4.61e-06, 0.0121, 0.00839]) == ["4.61e-06", "0.0121", "0.00839"]


def test_table_aligns_numbers_right_and_text_left():
    rows = [dict(head="gap", params_head=4656.0, batch_size=1.0, latency=2.951),
            dict(head="mldecoder", params_head=289_000.0, batch_size=32.0, latency=12.29)]
    text = format_table(rows, ["head", "params_head", "batch_size", "latency"],
                        ["head", "head params", "batch", "ms"])
    lines = text.splitlines()
    assert lines[0].split() == ["head", "head", "params", "batch", "ms"]
    assert lines[2].split() == ["gap", "4.66K", "1", "2.95"]
    assert lines[3].split() == ["mldecoder", "289K", "32", "12.29"]
    assert lines[2].index("4.66K") + len("4.66K") == lines[3].index("289K") + len("289K")  # right-aligned
