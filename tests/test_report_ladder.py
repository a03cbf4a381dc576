"""The report's ladder: a claim tested on two rungs (from scratch on synthetic data, pretrained and frozen on real
images) gets a verdict per rung, side by side in the summary and in the claim's ladder table, says plainly when the
rungs disagree, and never combines them into one word; its rules (cost parts) keep a word of their own.

Two throwaway studies of a test-only claim are registered for the test (the registry is restored after it), their
rows built so that each rung's hypothesis is clearly decided: paired differences of +5 or -5 (spread about 0.4)
over seeds 0-4.
"""
import os

import pytest

from bench.report import kit as rk
from bench.report import render as rp
from bench.studies import PROXY, RUNGS, STUDIES, Hypothesis, Study

from test_report import _write, seeds_rows

CLAIM = 99
GAP = [50.0, 51.0, 50.5, 51.2, 50.1]
GAIN = [5.0, 5.5, 4.5, 5.2, 4.8]  # per seed: mean +5.04, sd 0.38


def _hypothesis():
    return Hypothesis(name="ML-Decoder vs GAP", statement="ML-Decoder has a higher mAP than GAP",
                      variant={"head": "mldecoder"}, reference={"head": "gap"}, test="better")


def _claim_code(claim, rows, ctx):
    """A rule part, as a study's own code adds one: it belongs to no rung."""
    claim.paper_figure = "the ladder paper's figure"
    claim.parts.append(rk.Part("cost", rk.REPRODUCED if rows is not None else rk.NOT_RUN, "head GMACs 0.01",
                               "below 1 GMAC"))
    claim.suite_figure = "head GMACs 0.01"


def _studies():
    common = dict(claim=CLAIM, statement="ML-Decoder beats GAP on every rung.", paper="the ladder paper",
                  base=dict(PROXY), variations=[dict(heads=["gap", "mldecoder"])], hypotheses=[_hypothesis()])
    return [Study(name="ladder-scratch", claim_code=_claim_code, **common),
            Study(name="ladder-pretrained", rung="pretrained", notes="frozen lite0 on emoji", **common)]


def _rows(study, backbone, dataset, sign):
    return (seeds_rows(study, backbone, "gap", 96, 48, dataset, GAP)
            + seeds_rows(study, backbone, "mldecoder", 96, 48, dataset, [g + sign * d for g, d in zip(GAP, GAIN)]))


@pytest.fixture
def ladder(tmp_path, monkeypatch):
    """Only the two rung studies registered; ``write(sign)`` writes their rows (the pretrained rung's gain times
    ``sign``) and builds the report, returning (result, README text)."""
    monkeypatch.setattr(STUDIES, "_entries", {s.name: s for s in _studies()})
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs")

    def write(sign):
        _write(os.path.join("runs", "study-ladder-scratch.csv"), _rows("ladder-scratch", "test_resnet", "scenes", 1))
        _write(os.path.join("runs", "study-ladder-pretrained.csv"),
               _rows("ladder-pretrained", "tf_efficientnet_lite0", "emoji", sign))
        res = rp.build_report("runs", "report", "no-paper", make_plots=False)
        return res, open(res["readme"]).read()

    return write


def _summary_row(text):
    """The summary table as {header: cell} for the test claim's row."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| claim | statement |"))
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    row = next(line for line in lines[head:] if line.startswith(f"| [{CLAIM}]"))
    return dict(zip(split(lines[head]), split(row)))


def test_rungs_that_disagree_are_shown_side_by_side_and_never_combined(ladder):
    res, text = ladder(-1)
    assert res["verdicts"][CLAIM] == {"rules": rp.REPRODUCED, "scratch": rp.REPRODUCED,
                                      "pretrained": rp.NOT_REPRODUCED}
    row = _summary_row(text)
    assert "verdict" not in row  # no column combines the rungs
    assert list(row)[3:] == ["rules (cost, coverage)", RUNGS["scratch"], RUNGS["pretrained"], "rungs agree?"]
    assert row["rules (cost, coverage)"] == "**reproduced**: head GMACs 0.01"
    assert row[RUNGS["scratch"]].startswith("**reproduced**: ML-Decoder vs GAP: +5.0 [")
    assert row[RUNGS["pretrained"]].startswith("**not reproduced**: ML-Decoder vs GAP: -5.0 [")
    assert row["rungs agree?"] == (f"no: reproduced ({RUNGS['scratch']}); not reproduced ({RUNGS['pretrained']})")
    assert f"**{rp.PARTLY}" not in text  # combining the rungs would say "partly reproduced"

    claim = text[text.index(f"## Claim {CLAIM}:"):]
    assert f"*Rung: {RUNGS['pretrained']}* (`bench study ladder-pretrained`)" in claim
    assert claim.count("**The paper:** the ladder paper") == 1  # the sibling's same statement is not repeated
    assert "| rung | studies | figure | verdict |" in claim
    assert "| the paper | — | the ladder paper's figure | — |" in claim
    assert "| rules (cost, coverage) | `ladder-scratch` | head GMACs 0.01 | **reproduced** |" in claim
    ladder_rows = [line for line in claim.splitlines() if line.startswith(f"| {RUNGS['scratch']} |")
                   or line.startswith(f"| {RUNGS['pretrained']} |")]
    assert len(ladder_rows) == 2
    assert ladder_rows[0].startswith(f"| {RUNGS['scratch']} | `ladder-scratch` | ML-Decoder vs GAP: +5.0 [")
    assert ladder_rows[0].endswith("| **reproduced** |")
    assert ladder_rows[1].startswith(f"| {RUNGS['pretrained']} | `ladder-pretrained` | ML-Decoder vs GAP: -5.0 [")
    assert ladder_rows[1].endswith("| **not reproduced** |")
    # the rungs in order; the accuracy blocks name their rung; each rung's verdict lists its own parts only, then
    # the rules'
    assert f"*{RUNGS['pretrained']}*, `ladder-pretrained`: **Accuracy** ({RUNGS['pretrained']};" in claim
    assert "**Verdict:" not in text
    order = [f"*Rung: {RUNGS['scratch']}*", "**The paper:** the ladder paper", f"*Rung: {RUNGS['pretrained']}*",
             "| rung | studies |", f"*{RUNGS['scratch']}*, `ladder-scratch`: **Accuracy**",
             f"*{RUNGS['pretrained']}*, `ladder-pretrained`: **Accuracy**",
             f"**Verdict, {RUNGS['scratch']}: reproduced.**", "- ML-Decoder vs GAP: **reproduced**",
             f"**Verdict, {RUNGS['pretrained']}: not reproduced.**", "- ML-Decoder vs GAP: **not reproduced**",
             "**Rules: reproduced.**", "- cost: **reproduced**: head GMACs 0.01"]
    at = [claim.index(s) for s in order]
    assert at == sorted(at)


def test_rungs_that_agree_say_yes(ladder):
    res, text = ladder(1)
    assert res["verdicts"][CLAIM] == {"rules": rp.REPRODUCED, "scratch": rp.REPRODUCED, "pretrained": rp.REPRODUCED}
    assert _summary_row(text)["rungs agree?"] == "yes"


def test_a_rung_not_run_yet_is_its_own_word_and_decides_no_agreement(ladder):
    res, text = ladder(1)
    os.remove(os.path.join("runs", "study-ladder-pretrained.csv"))
    res = rp.build_report("runs", "report", "no-paper", make_plots=False)
    text = open(res["readme"]).read()
    assert res["verdicts"][CLAIM] == {"rules": rp.REPRODUCED, "scratch": rp.REPRODUCED, "pretrained": rp.NOT_RUN}
    row = _summary_row(text)
    assert row[RUNGS["pretrained"]] == f"**{rp.NOT_RUN}**" and row["rungs agree?"] == "—"


def test_claim_words_per_rung_and_rules():
    """Claim.verdicts: a word for the rules and one per rung, each from its own parts only."""
    c = rk.Claim(1, "s", ["a", "b"], rung_studies={"scratch": ["a"], "pretrained": ["b"]},
                 parts=[rk.Part("cost", rk.NOT_REPRODUCED, ""), rk.Part("h", rk.REPRODUCED, "", rung="scratch"),
                        rk.Part("h", rk.INCONCLUSIVE, "", rung="pretrained")])
    assert c.verdicts == {"rules": rk.NOT_REPRODUCED, "scratch": rk.REPRODUCED, "pretrained": rk.INCONCLUSIVE}
    assert rk.Claim(1, "s", ["a"], rung_studies={"scratch": ["a"]}).rules_verdict is None
