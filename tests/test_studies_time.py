"""scripts/studies_time.py: which studies make a rung, how they are put on lanes, and the times file it writes is
the one the report reads (bench.report.render.load_times)."""
import importlib.util
import os

import pytest

from bench.report import render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def studies_time():
    spec = importlib.util.spec_from_file_location("studies_time", os.path.join(ROOT, "scripts", "studies_time.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_rung_is_the_claims_studies_on_it(studies_time):
    assert studies_time.rung_studies("pretrained") == [
        "backbone-vs-head-pretrained", "drop-in-pretrained", "groups-pretrained", "pooling-pretrained",
        "queries-pretrained", "self-attention-pretrained", "zsl-pretrained"]  # not probing: beyond the claims
    assert studies_time.rung_studies("finetuned") == ["pooling-finetuned"]
    assert "groups" in studies_time.rung_studies("scratch") and "probing" not in studies_time.rung_studies("scratch")


def test_longest_first_onto_the_shorter_lane(studies_time):
    lanes, length = studies_time.schedule({"a": 50.0, "b": 40.0, "c": 30.0, "d": 15.0}, 2)
    assert lanes == [["a", "d"], ["b", "c"]] and length == [65.0, 70.0]
    one, total = studies_time.schedule({"a": 1.0, "b": 2.0}, 1)
    assert one == [["b", "a"]] and total == [3.0]


def test_recorded_times_are_what_the_report_reads(studies_time, tmp_path):
    path = studies_time.record_times(str(tmp_path), {"groups-pretrained": (600.04, 0, 0), "zsl-pretrained": (90.0, 1, 1),
                                                     "queries-pretrained": (60.0, 0, 1)},
                                     "pretrained", lanes=2, threads=1, cold=True)
    studies_time.record_times(str(tmp_path), {"groups-pretrained": (300.0, 0, 0)}, "pretrained", 2, 1, False)
    assert path == str(tmp_path / "times.csv")
    times = render.load_times(str(tmp_path))
    assert times["groups-pretrained"]["wall_s"] == "300.0" and times["groups-pretrained"]["cold_cache"] == "0"
    assert times["zsl-pretrained"]["exit_code"] == "1" and times["zsl-pretrained"]["rung"] == "pretrained"
    assert "--rung pretrained --run" in times["zsl-pretrained"]["command"]
    assert times["zsl-pretrained"]["lane"] == "1"
    assert render.rung_wall(list(times.values())) == 300.0  # lane 0: 300 s; lane 1: 90 + 60 s
    [line] = render._rung_times(times)
    assert "3 studies in 5.0 min of wall time on 2 lane(s) of 1 thread(s)" in line and "sum to 7.5 min" in line
    assert "exited with an error: zsl-pretrained" in line
    assert "empty cache" not in line  # one of them ran on a warm cache
