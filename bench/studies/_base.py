"""What a study is: a grid of run configurations and the hypotheses it tests, as data."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

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


@dataclass(frozen=True)
class Hypothesis:
    """One claim a study tests, as data, decided by ``bench.stats`` (never by the report).

    ``variant`` and ``reference`` select result rows (column -> value, e.g. ``{"head": "mldecoder(...)"}``; a
    column not named matches anything); their ``metric`` values are paired by seed and ``variant - reference`` is
    tested: ``test="not_worse"`` (within ``margin`` below) or ``"better"`` (above zero). ``margin`` is a judgement
    stated in advance, in the metric's units (mAP points), and printed with the verdict.

    When is the setting informative: ``chance`` selects the rows of a chance-level control (e.g. the same head on
    an untrained backbone, or a constant predictor's value in ``chance_value``) that ``reference`` must beat by at
    least ``above_chance`` points; ``differ`` names a measured column (e.g. how far learnable queries moved) that
    must exceed ``differ_min`` for two variants compared as "the same" to really be two functions. An
    uninformative setting is reported as such, never as support.
    """

    name: str
    statement: str
    variant: Dict[str, Any]
    reference: Dict[str, Any]
    test: str = "not_worse"
    margin: float = 1.0
    metric: str = "map"
    chance: Optional[Dict[str, Any]] = None
    chance_value: Optional[float] = None
    above_chance: float = 5.0
    differ: Optional[str] = None
    differ_min: float = 0.0


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
        hypotheses: what would count as the claim holding or failing (``Hypothesis``), beside the grid.
    """

    name: str
    claim: int
    statement: str
    paper: str
    base: Dict[str, Any]
    variations: List[Dict[str, Any]]
    notes: str = ""
    hypotheses: List[Hypothesis] = dataclasses.field(default_factory=list)

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
    from ..datasets import dataset_num_classes

    return dataset_num_classes(spec, root)


def register_study(study: Study) -> Study:
    STUDIES.register(study.name)(study)
    return study


def list_studies() -> List[str]:
    return STUDIES.names()


def get_study(name: str) -> Study:
    return STUDIES.get(name)


