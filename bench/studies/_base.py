"""What a study is: a grid of run configurations and the hypotheses it tests, as data."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..analysis.stats import threshold_of
from ..registry import Registry

STUDIES: Registry = Registry("study")

# The CPU-scale proxy of the paper's accuracy experiments: the embedded `scenes` data, a small backbone trained
# from scratch, five seeds (the paired 95% interval is then +-1.24 paired sds: t_4 = 2.78 over sqrt(5)). Studies
# that train start from this; `--dataset`, `--backbone` etc. override it.
PROXY = dict(dataset="scenes", backbones=["test_resnet"], img_size=96, protocol="finetune", epochs=5,
             seeds=[0, 1, 2, 3, 4], batch_sizes=[1], timing=False, workers=0)
# Command-line options that only concern training (ignored by cost variations).
DATA_OPTIONS = ("dataset", "data_root", "protocol", "epochs", "seeds", "lr", "train_batch_size", "pretrained",
                "checkpoint")
# ML-Decoder and the transformer decoder at CPU-scale widths (the paper's D=768, FFN 2048 would cost more than
# the small backbone); both heads get the same widths so that comparisons stay fair.
SMALL = "embed=128, ffn=512, heads=4"
# The rungs of evidence an accuracy claim is tested on, in the report's order: a study tests its claim on one rung
# (``Study.rung``); a claim's rungs are sibling studies in one file (``groups`` and ``groups-pretrained``). Nothing is
# averaged across rungs: each gets its own verdict.
RUNGS = {
    "scratch": "from scratch, synthetic images",
    "pretrained": "pretrained, frozen, real images",
    "finetuned": "pretrained, fine-tuned, real images",
}
# The pretrained rung: frozen ImageNet-pretrained EfficientNet-Lites (weights installed with headbench, see
# bench.backbones.pretrained) probed on real images at 128 px, their features computed once per (backbone, dataset,
# split, resolution) and shared by every head, seed and study (bench.train.features' cache). The two real datasets
# are the probing study's specs, so its cached features serve here too.
PRETRAINED = dict(backbones=["tf_efficientnet_lite0"], pretrained=True, protocol="probe", img_size=128,
                  seeds=[0, 1, 2, 3, 4], batch_sizes=[1], timing=False, workers=0)
EMOJI = "emoji(train_size=2500, val_size=2000)"  # 100 classes, multi-label (mAP)
FASHION = "fashion-mnist(train_size=2500, val_size=2000)"  # 10 classes, single-label (top-1)
LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
# The columns that make one accuracy setting: a hypothesis compares heads within it (pairs by seed), one verdict
# per setting when a study runs several (or when `--backbone a,b` etc. make it several).
SETTING = ("backbone", "dataset", "img_size")


def grid(**axes) -> List[Dict[str, Any]]:
    """The cartesian product of the axes: grid(a=[1, 2], b=[3]) -> [{a: 1, b: 3}, {a: 2, b: 3}]."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


# How far above chance a proxy setting's reference must be for a comparison in it to say anything: a stated
# judgement, in the metric's points. On `scenes` a constant predictor scores about 5 mAP and a head on a frozen
# random-weight backbone about 7: a reference within 10 points of chance has learned too little to tell heads apart.
ABOVE_CHANCE = 10.0


@dataclass(frozen=True)
class Hypothesis:
    """One claim a study tests, as data, decided by ``bench.analysis.stats.evaluate`` (never by the report).

    ``variant`` and ``reference`` select result rows (column -> value, e.g. ``{"head": "mldecoder(...)"}``; head
    and dataset specs match whatever their option order; a column not named matches anything). Their ``metric``
    values are paired by seed and ``variant - reference`` is tested: ``test="not_worse"`` (the variant loses less
    than ``margin``; a margin is required) or ``"better"`` (the variant gains more than ``margin``, 0 unless
    given). ``margin`` is a judgement stated in advance, in the metric's units (mAP points), printed with the
    verdict. ``per`` names columns that split the rows into settings (e.g. ``("backbone", "dataset",
    "img_size")``): one verdict per setting, pairs formed within it.

    When the setting is informative: the reference must beat a chance level by at least ``above_chance`` points
    (None: no chance check, e.g. when the reference is itself the chance control). The chance level is the mean
    ``metric`` of the rows selected by ``chance`` (a control run, e.g. random class embeddings), else
    ``chance_value``, else the rows' recorded ``<metric>_chance`` column (a constant predictor on the evaluation
    split, see ``bench.train.evaluation.chance_metrics``). ``differ`` names a measured column (e.g. ``query_shift``,
    how far learnable queries moved from their initial values) whose means on the two sides must differ by at
    least ``differ_min`` for two variants compared as "the same" to really be two functions. An uninformative
    setting is reported as such, never as support.
    """

    name: str
    statement: str
    variant: Dict[str, Any]
    reference: Dict[str, Any]
    test: str = "not_worse"
    margin: Optional[float] = None
    metric: str = "map"
    per: Tuple[str, ...] = ()
    chance: Optional[Dict[str, Any]] = None
    chance_value: Optional[float] = None
    above_chance: Optional[float] = ABOVE_CHANCE
    differ: Optional[str] = None
    differ_min: float = 0.0

    def __post_init__(self):
        margin, _ = threshold_of(self.test, self.margin)  # ValueError on an unknown test or a missing margin
        object.__setattr__(self, "margin", margin)
        object.__setattr__(self, "per", tuple(self.per))
        for name in ("variant", "reference"):
            if not isinstance(getattr(self, name), dict) or not getattr(self, name):
                raise ValueError(f"hypothesis {self.name!r}: {name} must be a non-empty dict of column -> value")
        if self.above_chance is not None and self.above_chance < 0:
            raise ValueError(f"hypothesis {self.name!r}: above_chance must be >= 0 or None, got "
                             f"{self.above_chance!r}")


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
        hypotheses: what would count as an accuracy claim holding or failing (``Hypothesis``), beside the grid;
            ``bench.analysis.stats.evaluate`` decides them and the report renders the verdicts.
        cost_rules: the thresholds of the study's cost rules (e.g. the log-log slope below which growth counts
            as linear), by name, applied by the study's own ``claim_code``.
        rung: the rung of evidence its accuracy hypotheses stand on (``RUNGS``): the claim's report shows each
            rung's verdict side by side.

    The report (``bench.report.render``) renders each study from these; its own code, in the study's file, is built from
    ``bench.report.kit`` (``Claim``, ``Part``, ``Context``: every study's rows, the paper's rows, the out dir):

        claim_code: the study's share of its claim's section, ``claim_code(claim, rows, ctx)``: it adds to the
            ``Claim`` the paper's figure, this suite's figure, cost tables, the parts its cost rules decide, plots
            (``rows`` None: the study has not run). Called for each study of a claim in name order, before any
            study's accuracy table and verdicts. A claim with none gets a bar plot per study instead.
        claim_section: what the study adds to its claim's section after its accuracy table and verdicts,
            ``claim_section(rows, ctx) -> (markdown, [plot file names])``; called when it has rows.
        section: the section of a study that tests no claim of the paper (``claim`` None), rendered as its own
            part of the report: ``section(rows, ctx) -> (markdown, [plot file names])``, plots written into
            ``ctx.out_dir``; None: the report's generic table and verdicts.
    """

    name: str
    claim: Optional[int]
    statement: str
    paper: str
    base: Dict[str, Any]
    variations: List[Dict[str, Any]]
    notes: str = ""
    hypotheses: List[Hypothesis] = dataclasses.field(default_factory=list)
    cost_rules: Dict[str, float] = dataclasses.field(default_factory=dict)
    rung: str = "scratch"
    claim_code: Optional[Callable[..., None]] = None
    claim_section: Optional[Callable[..., Tuple[str, List[str]]]] = None
    section: Optional[Callable[..., Tuple[str, List[str]]]] = None

    def __post_init__(self):
        if self.rung not in RUNGS:
            raise ValueError(f"study {self.name!r}: unknown rung {self.rung!r}; valid: {', '.join(RUNGS)}")

    def on_rung(self, rung: str, **fields) -> "Study":
        """A sibling testing this study's claim on another rung (``RUNGS``): named ``<name>-<rung>``, with the same
        claim, statement and paper, and the fields given (its grid, notes, hypotheses: this study's unless given).
        It has no report code of its own unless given: the claim's code belongs to the study that draws it."""
        own = dict(name=f"{self.name}-{rung}", rung=rung, claim_code=None, claim_section=None, section=None,
                   cost_rules={})
        return dataclasses.replace(self, **{**own, **fields})

    def configs(self, results_dir: str = "results/runs", **overrides) -> list:
        """The RunConfigs of the study, every one writing to the study's own results file: each variation over
        ``base``, the overrides given (not None) over both (the data options only where the variation trains),
        the rest resolved by ``bench.run.config.resolve_config`` as for ``bench run``."""
        # Lazy: the configuration resolves heads and datasets, which load torch; the report reads the studies
        # (their grids, hypotheses and sections) without loading model code.
        from ..run.config import DEFAULTS, RunConfig, RunOptions, resolve_config

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
            if not kw.get("cost_only"):  # training: N is the dataset's (the values computed below may use it)
                kw["num_classes"] = _dataset_classes(kw.get("dataset", DEFAULTS["dataset"]), kw.get("data_root"))
            else:  # a training variation made cost-only (--cost-only) computes its values from the default N
                kw.setdefault("num_classes", DEFAULTS["num_classes"])
            for k, v in var.items():  # values computed from the rest of the configuration
                if callable(v) and k not in given:
                    kw[k] = v(kw)
            kw.update(results_dir=results_dir, run_id=f"study-{self.name}")
            cfg = resolve_config(RunOptions(**kw))
            key = repr(sorted(dataclasses.asdict(cfg).items()))
            if key not in seen:  # variations that collapse (e.g. N given by the data) run once
                seen.add(key)
                out.append(cfg)
        return out


def _dataset_classes(spec: str, root) -> int:
    from ..run.config import dataset_classes  # lazy: see Study.configs

    return dataset_classes(spec, root)


def register_study(study: Study) -> Study:
    STUDIES.register(study.name)(study)
    return study


def list_studies() -> List[str]:
    return STUDIES.names()


def get_study(name: str) -> Study:
    return STUDIES.get(name)


