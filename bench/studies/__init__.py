"""Named studies: each claim of the ML-Decoder paper as data (a base configuration and a grid of variations,
like asv's parameter grids), run through the same runner and results store as ``bench run``.

A study's rows go to ``<results-dir>/study-<name>.csv``; cells already there are not run again, so an
interrupted study resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Dict, List

from ..registry import Registry

STUDIES: Registry = Registry("study")

# The CPU-scale proxy of the paper's accuracy experiments: the embedded `scenes` data, a small backbone trained
# from scratch, three seeds. Studies that train start from this; `--dataset`, `--backbone` etc. override it.
PROXY = dict(dataset="scenes", backbones=["test_resnet"], img_size=96, protocol="finetune", epochs=5,
             seeds=[0, 1, 2], batch_sizes=[1], timing=False, workers=0)
# Command-line options that only concern training (ignored by cost variations).
DATA_OPTIONS = ("dataset", "data_root", "protocol", "epochs", "seeds", "lr", "train_batch_size", "pretrained",
                "checkpoint")
# ML-Decoder and the transformer decoder at CPU-scale widths (the paper's D=768, FFN 2048 would cost more than
# the small backbone); both heads get the same widths so that comparisons stay fair.
SMALL = "embed=128, ffn=512, heads=4"


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
            be a function of the configuration being built (e.g. heads that depend on ``num_classes``). A
            variation with ``cost_only=True`` measures cost only; the others train and evaluate (on the CPU
            proxy unless ``--dataset`` etc. are given), unless the command line says ``--cost-only``.
        notes: what a reader of the report should know (proxies, limits of the CPU-scale version).
    """

    name: str
    claim: int
    statement: str
    paper: str
    base: Dict[str, Any]
    variations: List[Dict[str, Any]]
    notes: str = ""

    def configs(self, results_dir: str = "results/runs", **overrides) -> list:
        """The RunConfigs of the study, every one writing to the study's own results file."""
        from ..runner import RunConfig

        fields = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown study override(s) {sorted(unknown)}; valid: {', '.join(sorted(fields))}")
        out, seen = [], set()
        given = {k: v for k, v in overrides.items() if v is not None}
        for var in self.variations:
            fixed = {k: v for k, v in var.items() if not callable(v)}
            if fixed.get("cost_only"):  # a cost variation: the data options do not apply to it
                kw = {**self.base, **fixed, **{k: v for k, v in given.items() if k not in DATA_OPTIONS}}
            else:
                kw = {**self.base, **fixed, **given}
            if not kw.get("cost_only"):  # training: N is the dataset's
                kw["num_classes"] = _dataset_classes(kw.get("dataset", "scenes"), kw.get("data_root"))
            for k, v in var.items():  # values computed from the rest of the configuration
                if callable(v) and k not in given:
                    kw[k] = v(kw)
            kw.update(results_dir=results_dir, run_id=f"study-{self.name}")
            cfg = RunConfig(**kw)
            key = repr(sorted(dataclasses.asdict(cfg).items()))
            if key not in seen:  # variations that collapse (e.g. N given by the data) run once
                seen.add(key)
                out.append(cfg)
        return out


def _dataset_classes(spec: str, root) -> int:
    from ..datasets import create_dataset

    return create_dataset(spec, "val", root=root, img_size=32).num_classes


def register_study(study: Study) -> Study:
    STUDIES.register(study.name)(study)
    return study


def list_studies() -> List[str]:
    return STUDIES.names()


def get_study(name: str) -> Study:
    return STUDIES.get(name)


# The studies, one small file each (explicit list: no directory scanning).
from . import compute, self_attention, groups, classes, queries, backbone_vs_head, zsl, drop_in  # noqa: E402,F401
