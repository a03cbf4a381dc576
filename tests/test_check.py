"""bench.analysis.check: matching results to a baseline, statuses per metric, tolerances, the rendered table."""
import pandas as pd
import pytest

from bench.analysis.check import (
    DEFAULT_TOLERANCES, METRIC_RULES, compare, format_table, has_regression, parse_tolerances, summarize,
)
from bench.run.results import ResultsWriter, read_results

IDS = dict(backbone="resnet18", head="gap", img_size=224, num_classes=40, batch_size=32, device="cpu",
           dtype="float32", channels_last=False, compile=False, dataset="scenes", protocol="probe", epochs=2,
           seed=0)
METRICS = dict(map=80.0, cf1=70.0, of1=72.0, gmacs_total=1.8234, params_total=11197032, latency_ms_p50=12.0)


def row(run_id="r1", timestamp="2025-01-01T10:00:00", **changes):
    return {"run_id": run_id, **IDS, **METRICS, "status": "ok", "timestamp": timestamp, **changes}


def frame(*rows):
    return pd.DataFrame(list(rows))


def status_of(df, metric, **ids):
    sel = df[df["metric"] == metric]
    for k, v in ids.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel["status"].iloc[0]


def test_identical_rerun_is_not_flagged():
    df = compare(frame(row(run_id="r2")), frame(row()))
    assert set(df["status"]) == {"within noise"}
    assert set(df["metric"]) == {"map", "cf1", "of1", "gmacs_total", "params_total"}  # latency is opt-in
    assert not has_regression(df)


@pytest.mark.parametrize("change, status", [(-1.0, "worse"), (+1.0, "better"), (-0.1, "within noise"),
                                            (+0.1, "within noise"), (-0.5, "within noise")])
def test_map_change_classified(change, status):
    df = compare(frame(row(map=80.0 + change)), frame(row()))
    assert status_of(df, "map") == status
    assert has_regression(df) == (status == "worse")
    assert df.loc[df["metric"] == "map", "delta"].iloc[0] == pytest.approx(change)


def test_gmacs_change_is_flagged_in_either_direction():
    for gmacs in (1.9, 1.7):
        df = compare(frame(row(gmacs_total=gmacs)), frame(row()))
        assert status_of(df, "gmacs_total") == "changed"
        assert has_regression(df)
    # CSV rounding (6 significant digits) stays within the 0.1% relative tolerance.
    assert status_of(compare(frame(row(gmacs_total=1.82340004)), frame(row())), "gmacs_total") == "within noise"


def test_params_change_is_flagged():
    df = compare(frame(row(params_total=11197032 + 50_000)), frame(row()))
    assert status_of(df, "params_total") == "changed"


def test_empty_baseline_identifiers_match_anything():
    # The paper gives no batch size, seed or device: the baseline leaves them empty.
    baseline = frame(row(batch_size="", seed=None, device=float("nan"), map=80.0))
    results = frame(row(batch_size=64, seed=3, device="cuda", map=78.0))
    df = compare(results, baseline)
    assert status_of(df, "map") == "worse"


def test_non_empty_identifier_must_match():
    baseline = frame(row(head="mldecoder(groups=20)"))
    df = compare(frame(row(head="gap")), baseline)
    assert set(df["status"]) == {"missing"}
    assert (df["note"] == "no matching results row").all()


def test_latest_matching_row_is_chosen():
    results = frame(row(run_id="late", timestamp="2025-03-01T00:00:00", map=82.0),
                    row(run_id="early", timestamp="2025-01-01T00:00:00", map=70.0),  # later in file, older
                    row(run_id="other", timestamp="2025-04-01T00:00:00", head="txdec", map=10.0))
    df = compare(results, frame(row()))
    assert status_of(df, "map") == "better"
    assert set(df["result_run_id"]) == {"late"}


def test_row_order_breaks_timestamp_ties():
    results = frame(row(run_id="first", map=70.0), row(run_id="second", map=80.2))
    df = compare(results, frame(row()))
    assert status_of(df, "map") == "within noise"
    assert set(df["result_run_id"]) == {"second"}


def test_missing_row_and_missing_metric():
    baseline = frame(row(), row(head="txdec"))
    results = frame(row(map=None, cf1=None, of1=None, status="error"))  # the gap run crashed after costing
    df = compare(results, baseline)
    assert status_of(df, "map", head="gap") == "missing"
    assert "status error" in df.loc[(df["metric"] == "map") & (df["head"] == "gap"), "note"].iloc[0]
    assert status_of(df, "gmacs_total", head="gap") == "within noise"
    assert set(df[df["head"] == "txdec"]["status"]) == {"missing"}
    # Missing fails by default (a head that stops building must not pass) unless explicitly allowed.
    assert has_regression(df)
    assert not has_regression(df, missing_ok=True)


def test_metric_absent_from_baseline_is_not_compared():
    baseline = frame(row())[[*IDS, "map"]]
    df = compare(frame(row(cf1=0.0)), baseline)
    assert list(df["metric"]) == ["map"]


def test_identifiers_match_across_types():
    # A CSV read back gives floats for integer columns with gaps, strings for booleans.
    results = frame(row(img_size=224.0, num_classes="40", channels_last="False", compile="false", epochs=2.0))
    df = compare(results, frame(row()))
    assert set(df["status"]) == {"within noise"}


def test_timings_are_opt_in():
    results = frame(row(latency_ms_p50=20.0))
    assert "latency_ms_p50" not in set(compare(results, frame(row()))["metric"])
    df = compare(results, frame(row()), tolerances={"latency_ms_p50": 0.5})
    assert status_of(df, "latency_ms_p50") == "worse"  # +67% > 50%, lower is better
    df = compare(results, frame(row()), metrics=["latency_ms_p50"])
    assert list(df["metric"]) == ["latency_ms_p50"] and status_of(df, "latency_ms_p50") == "worse"
    df = compare(frame(row(latency_ms_p50=6.0)), frame(row()), metrics=["latency_ms_p50"])
    assert status_of(df, "latency_ms_p50") == "better"


def test_tolerance_override():
    df = compare(frame(row(map=79.0)), frame(row()), tolerances={"map": 1.5})
    assert status_of(df, "map") == "within noise"
    df = compare(frame(row(map=79.9)), frame(row()), tolerances=parse_tolerances(["map=0.05"]))
    assert status_of(df, "map") == "worse"


def test_std_widens_tolerance():
    baseline = frame(row(map_std=0.6))  # 2 std = 1.2 points > 0.5
    assert status_of(compare(frame(row(map=79.0)), baseline), "map") == "within noise"
    assert status_of(compare(frame(row(map=78.5)), baseline), "map") == "worse"
    narrow = frame(row(map_std=0.1))  # 2 std = 0.2 < 0.5: the default stands
    assert status_of(compare(frame(row(map=79.6)), narrow), "map") == "within noise"


def test_parse_tolerances():
    assert parse_tolerances(["map=0.3", "gmacs_total=0.02", "latency_ms_p50=50%"]) == \
        {"map": 0.3, "gmacs_total": 0.02, "latency_ms_p50": 0.5}
    assert parse_tolerances([]) == {}


@pytest.mark.parametrize("item, match", [
    ("mAP=0.3", r"unknown metric 'mAP' \(did you mean map"),
    ("accuracy=1", r"unknown metric 'accuracy'.*valid metrics are \["),
    ("map", "not METRIC=VALUE"),
    ("map=", "not METRIC=VALUE"),
    ("map=abc", "'abc' is not a number"),
    ("map=-1", "non-negative"),
    ("map=1%", "absolute tolerance"),
])
def test_parse_tolerances_errors(item, match):
    with pytest.raises(ValueError, match=match):
        parse_tolerances([item])


def test_compare_rejects_unknown_metrics():
    with pytest.raises(ValueError, match="unknown metric 'mapp'"):
        compare(frame(row()), frame(row()), metrics=["mapp"])
    with pytest.raises(ValueError, match="unknown metric 'top_1'"):
        compare(frame(row()), frame(row()), tolerances={"top_1": 1.0})
    with pytest.raises(ValueError, match="not a number"):
        compare(frame(row()), frame(row(map="high")))


def test_defaults_are_documented_in_one_table():
    assert DEFAULT_TOLERANCES["map"] == 0.5 and METRIC_RULES["map"].kind == "absolute"
    assert DEFAULT_TOLERANCES["gmacs_total"] == 0.001 and METRIC_RULES["gmacs_total"].direction == "exact"
    assert not METRIC_RULES["latency_ms_p50"].default
    assert set(DEFAULT_TOLERANCES) == set(METRIC_RULES)


def test_format_table_golden():
    baseline = frame(row(), row(head="txdec", map=81.0, map_std=0.5))
    results = frame(row(map=79.0, gmacs_total=1.9), row(head="txdec", map=81.25))
    df = compare(results, baseline, metrics=["map", "gmacs_total"])
    expected = (
        "backbone=resnet18  img_size=224  num_classes=40  batch_size=32  device=cpu  dtype=float32  "
        "channels_last=false  compile=false  dataset=scenes  protocol=probe  epochs=2  seed=0\n"
        "head   metric       baseline  result    delta   tolerance  status\n"
        "-----  -----------  --------  ------  -------  ----------  ------------\n"
        "gap    map                80      79       -1        ±0.5  worse\n"
        "gap    gmacs_total    1.8234     1.9  +0.0766       ±0.1%  changed\n"
        "txdec  map                81   81.25    +0.25  ±1 (2 std)  within noise\n"
        "txdec  gmacs_total    1.8234  1.8234       +0       ±0.1%  within noise"
    )
    assert format_table(df) == expected
    assert summarize(df) == "4 compared: 1 worse, 1 changed, 2 within noise"


def test_format_table_note_and_empty():
    df = compare(frame(), frame(row()), metrics=["map"])
    text = format_table(df)
    assert "note" in text.splitlines()[1] and "no matching results row" in text
    empty = pd.DataFrame(columns=list(IDS) + ["metric", "status", "note"])
    assert format_table(empty).startswith("no comparisons")
    assert summarize(empty) == "0 compared"


@pytest.mark.parametrize("baseline, reason", [
    (pd.DataFrame({"a": [1], "b": [2]}), "no baseline row has a value in a metric column compared (map, "),
    (pd.DataFrame(columns=["backbone", "head", "map"]), "the baseline has no rows"),
])
def test_a_baseline_that_compares_nothing_is_an_error(baseline, reason):
    # A check that compared nothing must not pass: it says why (the columns it looked for) instead.
    with pytest.raises(ValueError, match="nothing to compare") as e:
        compare(frame(row()), baseline)
    assert reason in str(e.value)
    if len(baseline):
        assert "nor in an identifying column (backbone, head, " in str(e.value)
        assert "the baseline's columns with values: a, b" in str(e.value)
    with pytest.raises(ValueError, match=r"metric column compared \(latency_ms_p50\)"):
        compare(frame(row()), frame(row(latency_ms_p50="")), metrics=["latency_ms_p50"])


def test_cli_check_against_a_baseline_without_known_columns_fails(tmp_path, capsys):
    from bench.cli import main

    base_path, run_path = tmp_path / "baseline.csv", tmp_path / "run.csv"
    base_path.write_text("a,b\n1,2\n")
    with ResultsWriter(str(run_path)) as w:
        w.write(row())
    with pytest.raises(SystemExit) as e:
        main(["check", "--baseline", str(base_path), "--results", str(run_path)])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and "OK" not in out
    assert err.startswith("error: nothing to compare") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_through_result_files(tmp_path):
    # Real files: written by ResultsWriter, read back by read_results (types come back as pandas infers them).
    base_path, run_path = tmp_path / "baseline.csv", tmp_path / "run.csv"
    with ResultsWriter(str(base_path)) as w:
        w.write({k: v for k, v in row().items() if k not in ("run_id", "batch_size", "seed", "latency_ms_p50")})
    with ResultsWriter(str(run_path)) as w:
        w.write(row(run_id="a", map=80.1, timestamp="2025-01-01T10:00:00"))
        w.write(row(run_id="b", map=78.5, timestamp="2025-01-02T10:00:00", seed=1))
    df = compare(read_results([str(run_path)]), read_results([str(base_path)]))
    assert status_of(df, "map") == "worse" and set(df["result_run_id"]) == {"b"}
    assert has_regression(df)


def test_timestamps_in_mixed_formats_order_correctly():
    results = frame(row(run_id="new", timestamp="2025-02-01 09:00:00", map=80.0),
                    row(run_id="old", timestamp="2025-01-01T10:00:00+00:00", map=70.0),
                    row(run_id="unstamped", timestamp="", map=60.0))
    df = compare(results, frame(row()))
    assert set(df["result_run_id"]) == {"new"}


def test_allow_missing_with_no_matching_row_compares_nothing_and_fails(tmp_path, capsys):
    """--allow-missing accepts a baseline row without results; when no row matches at all the check compared
    nothing and must not say OK."""
    from bench.cli import main

    base_path, run_path, other_path = tmp_path / "baseline.csv", tmp_path / "run.csv", tmp_path / "other.csv"
    with ResultsWriter(str(base_path)) as w:
        w.write(row())
    with ResultsWriter(str(run_path)) as w:
        w.write(row(backbone="another_backbone"))
    with pytest.raises(SystemExit) as e:
        main(["check", "--baseline", str(base_path), "--results", str(run_path), "--allow-missing"])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and "OK" not in out and "nothing compared" in err
    with ResultsWriter(str(other_path)) as w:  # one matching row: compared, the check passes
        w.write(row())
    with pytest.raises(SystemExit) as e:
        main(["check", "--baseline", str(base_path), "--results", str(run_path), "--results", str(other_path),
              "--allow-missing"])
    out, _ = capsys.readouterr()
    assert e.value.code == 0 and "OK" in out
