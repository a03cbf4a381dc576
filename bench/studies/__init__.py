"""Named studies: each claim of the ML-Decoder paper as data (a base configuration and a grid of variations,
like asv's parameter grids), run through the same runner and results store as ``bench run``.

A study's rows go to ``<results-dir>/study-<name>.csv``; cells already there are not run again, so an
interrupted study resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..registry import Registry

STUDIES: Registry = Registry("study")


def grid(**axes) -> List[Dict[str, Any]]:
    """The cartesian product of the axes: grid(a=[1, 2], b=[3]) -> [{a: 1, b: 3}, {a: 2, b: 3}]."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


@dataclass
class Study:
    """A claim of the paper turned into runs.

    Attributes:
        name: the CLI name (``bench study NAME``).
        claim: the claim's number in the facts sheet (1-7) and its one-line statement.
        paper: the paper's own figure or statement for this claim.
        base: RunConfig fields shared by every variation.
        variations: RunConfig overrides, one per configuration run (``grid(...)`` builds products). A value may
            be a function of the configuration being built (e.g. heads that depend on ``num_classes``).
        trains: whether the study measures accuracy by default (otherwise it is cost-only unless a dataset is
            given on the command line).
        notes: what a reader of the report should know (proxies, limits of the CPU-scale version).
    """

    name: str
    claim: int
    statement: str
    paper: str
    base: Dict[str, Any]
    variations: List[Dict[str, Any]]
    trains: bool = False
    notes: str = ""

    def configs(self, results_dir: str = "results/runs", **overrides) -> list:
        """The RunConfigs of the study, every one writing to the study's own results file."""
        from ..runner import RunConfig

        fields = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown study override(s) {sorted(unknown)}; valid: {', '.join(sorted(fields))}")
        out = []
        for var in self.variations:
            given = {k: v for k, v in overrides.items() if v is not None}
            kw = {**self.base, **{k: v for k, v in var.items() if not callable(v)}, **given}
            if not self.trains and "dataset" not in given and "cost_only" not in given:
                kw["cost_only"] = True
            for k, v in var.items():  # values computed from the rest of the configuration
                if callable(v) and k not in given:
                    kw[k] = v(kw)
            kw.update(results_dir=results_dir, run_id=f"study-{self.name}")
            out.append(RunConfig(**kw))
        return out


def register_study(study: Study) -> Study:
    STUDIES.register(study.name)(study)
    return study


def list_studies() -> List[str]:
    return STUDIES.names()


def get_study(name: str) -> Study:
    return STUDIES.get(name)


# The studies, one small file each (explicit list: no directory scanning).
# from . import compute, self_attention, groups, classes, queries, backbone_vs_head, zsl
