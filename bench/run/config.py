"""The run configuration: ``RunConfig``, frozen, and ``resolve_config``, the one function that fills in its defaults.

``RunOptions`` is what a user gave (``bench run``'s options, a study's grid and overrides, a library caller's
keywords), None where nothing was given. ``resolve_config`` turns it into a ``RunConfig``, every default decided
there and nowhere else: the device (``auto``: CUDA when torch sees one), the dataset's (resolution, epochs, loader
workers, its class count), a cost-only run against a training run (memory and the training step's time), and the
CPU training run (ImageNet-pretrained EfficientNet-Lite0, its features probed by heads at CPU-scale widths).
Building a ``RunConfig`` only checks and normalises values: no device probe, no file read; head specs are parsed
there once, into ``HeadSpec`` values that carry their canonical label (``bench.heads.parse_head``).
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from ..datasets import dataset_num_classes
from ..heads import HeadSpec, parse_head
from ..report.fmt import parse_ints
from ..spec import canonical, parse_spec, split_specs
from .defaults import (COST_IMG_SIZE, CPU_SMALL,  # noqa: F401  (re-exported: the configuration's defaults)
                       DEFAULT_BACKBONE, DEFAULT_BACKBONE_CPU_TRAINING, DEFAULT_CPU_TRAINING, DEFAULT_HEADS,
                       DEFAULT_HEADS_CPU_TRAINING, DEFAULTS, DTYPES, PROTOCOLS, dataset_defaults)
from .results import new_run_id


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when it is set (the user's own limit), else the CPU cores this process may use (its
    affinity mask where the OS has one)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; any other name is returned as given
    (RunConfig validates it). Resolved once per run, so the header and every row name the device used."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _check_device_available(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here (torch {torch.__version__}, cuda "
                         f"build: {torch.version.cuda or 'none'}); use --device cpu")


@functools.lru_cache(maxsize=64)
def dataset_classes(spec: str, root: Optional[str] = None) -> int:
    """N of a dataset spec (``bench.datasets.dataset_num_classes``), looked up once per process: a dataset that is
    not defined by its spec alone reads its evaluation split to count them."""
    return dataset_num_classes(spec, root)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, resolved (``resolve_config`` makes one; ``dataclasses.replace`` derives another).

    Building one checks and normalises the values and does nothing else: heads become ``HeadSpec`` values (parsed
    once, labelled canonically), the dataset spec its canonical text. The sequences are lists, compared equal to
    plain lists; a configuration is never changed in place."""

    heads: List[HeadSpec]
    backbones: List[str]
    img_size: int
    num_classes: int
    batch_sizes: List[int]
    device: str  # "cpu", "cuda" or "cuda:N" (resolve_config resolves "auto")
    dtype: str
    channels_last: bool
    compile: bool
    cost_only: bool
    timing: bool  # measure at the batch sizes at all (off: params and MACs only)
    latency: bool  # with timing: inference latency and throughput
    memory: bool  # with timing: peak memory of inference and of a training step (bench.measure.memory)
    train_timing: bool  # with timing: the training step's time
    min_time_s: float
    dataset: str
    data_root: Optional[str]
    protocol: str
    epochs: int
    seeds: List[int]
    lr: Optional[float]
    train_batch_size: int
    workers: int
    pretrained: bool
    checkpoint: Optional[str]
    cache_dir: Optional[str]
    results_dir: str
    run_id: str
    threads: int  # torch threads of every cell; recorded in rows
    knn: int  # probe: also the k-nearest-neighbour baseline on the pooled features with this k (0: none)

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("heads", [parse_head(h) for h in self.heads])
        set_("dataset", canonical(self.dataset))
        for name in ("backbones", "batch_sizes", "seeds"):
            set_(name, list(getattr(self, name)))
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {self.threads!r}")
        if any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if isinstance(self.knn, bool) or not isinstance(self.knn, int) or self.knn < 0:
            raise ValueError(f"knn must be a whole number >= 0 (0: no k-NN baseline), got {self.knn!r}")
        if self.knn and self.protocol != "probe":
            raise ValueError(f"the k-NN baseline (knn={self.knn}) runs on cached features: it needs --protocol probe, "
                             f"not {self.protocol!r}")
        if self.img_size < 8:
            raise ValueError(f"img_size must be >= 8, got {self.img_size}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"unknown device {self.device!r}; valid: auto, cpu, cuda, cuda:N")
        if not self.run_id:
            raise ValueError("run_id is empty (resolve_config draws a new one)")

    @property
    def results_path(self) -> str:
        return os.path.join(self.results_dir, f"{self.run_id}.csv")


@dataclass(frozen=True)
class RunOptions:
    """What a user asked of a run, as given: None where nothing was given (``resolve_config`` decides it). The
    fields of ``RunConfig``, plus ``resume`` (where the run id comes from) and how ``bench run`` runs the cells
    (``executor``, ``ray_address``, ``plot``: not part of the configuration)."""

    heads: Optional[Sequence[str]] = None
    backbones: Optional[Sequence[str]] = None
    img_size: Optional[int] = None
    num_classes: Optional[int] = None
    batch_sizes: Optional[Sequence[int]] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    channels_last: Optional[bool] = None
    compile: Optional[bool] = None
    cost_only: Optional[bool] = None
    timing: Optional[bool] = None
    latency: Optional[bool] = None
    memory: Optional[bool] = None
    train_timing: Optional[bool] = None
    min_time_s: Optional[float] = None
    dataset: Optional[str] = None
    data_root: Optional[str] = None
    protocol: Optional[str] = None
    epochs: Optional[int] = None
    seeds: Optional[Sequence[int]] = None
    lr: Optional[float] = None
    train_batch_size: Optional[int] = None
    workers: Optional[int] = None
    pretrained: Optional[bool] = None
    checkpoint: Optional[str] = None
    cache_dir: Optional[str] = None
    results_dir: Optional[str] = None
    run_id: Optional[str] = None
    threads: Optional[int] = None
    knn: Optional[int] = None
    resume: Optional[str] = None  # a run id in results_dir, or "last": continue it (only missing cells run)
    executor: str = "local"
    ray_address: Optional[str] = None
    plot: bool = True

    @classmethod
    def from_cli(cls, *, heads=None, backbones=None, batch_sizes=None, seeds=None, no_timing=False, min_time=None,
                 compile_=None, **options) -> "RunOptions":
        """The options of ``bench run`` / ``bench study NAME`` as click gives them: comma-separated text for the
        lists (checked here, naming the option), ``--no-timing`` and ``--min-time`` under their flag names."""
        return cls(heads=None if heads is None else split_specs(heads),
                   backbones=None if backbones is None else split_specs(backbones),
                   batch_sizes=None if batch_sizes is None else parse_ints(batch_sizes, "--batch-sizes"),
                   seeds=None if seeds is None else parse_ints(seeds, "--seeds"),
                   timing=False if no_timing else None, min_time_s=min_time, compile=compile_, **options)

    def given(self) -> Dict[str, object]:
        """The configuration fields given (not None), by name."""
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        return {k: v for k, v in dataclasses.asdict(self).items() if k in fields and v is not None}


def _or(value, default):
    return default if value is None else value


def resolve_config(options: RunOptions) -> RunConfig:
    """The RunConfig of what a user gave: every default of a run decided here.

    - device: ``auto`` -> CUDA when torch sees one, else the CPU (an explicit ``cuda`` without one fails).
    - a training run on a CPU with no backbone given is the default run: ImageNet-pretrained EfficientNet-Lite0
      probed (its features computed once), at 128 px on ``scenes``; its heads, and any CPU training run's, at
      CPU-scale widths. Other runs: resnet50 from scratch, fine-tuned, the paper's heads.
    - resolution: 224 for a cost-only run, else the dataset's (``DATASET_DEFAULTS``), as are epochs and workers.
    - memory and the training step's time: on in a cost-only run, or where timing is asked for (a study that times
      its training runs); off in a training run, whose question is accuracy.
    - classes: a training run's are its dataset's (looked up after every value is checked); threads: this
      machine's (``default_threads``); run id: the one ``resume`` names, else a new one.
    """
    o = options
    device = resolve_device(_or(o.device, DEFAULTS["device"]))
    cost_only = _or(o.cost_only, DEFAULTS["cost_only"])
    dataset = _or(o.dataset, DEFAULTS["dataset"])
    ds_name = parse_spec(dataset).name if dataset else DEFAULTS["dataset"]
    per_dataset = dataset_defaults(ds_name)
    cpu_training = not cost_only and device == "cpu"
    default_run = o.backbones is None and cpu_training  # the pretrained probe run, unless options say otherwise
    measure_all = cost_only or o.timing is True
    if o.img_size is not None:
        img_size = o.img_size
    elif cost_only:
        img_size = COST_IMG_SIZE
    elif default_run and ds_name == "scenes":
        img_size = DEFAULT_CPU_TRAINING["img_size"]
    else:
        img_size = per_dataset["img_size"]
    results_dir = _or(o.results_dir, DEFAULTS["results_dir"])
    fixed = {k: _or(getattr(o, k), DEFAULTS[k]) for k in (
        "batch_sizes", "dtype", "channels_last", "compile", "timing", "latency", "min_time_s", "seeds",
        "train_batch_size", "knn")}
    cfg = RunConfig(
        heads=_or(o.heads, split_specs(DEFAULT_HEADS_CPU_TRAINING if cpu_training else DEFAULT_HEADS)),
        backbones=_or(o.backbones, [DEFAULT_BACKBONE_CPU_TRAINING if cpu_training else DEFAULT_BACKBONE]),
        img_size=img_size, num_classes=_or(o.num_classes, DEFAULTS["num_classes"]), device=device,
        cost_only=cost_only, memory=_or(o.memory, measure_all), train_timing=_or(o.train_timing, measure_all),
        dataset=dataset, data_root=o.data_root,
        protocol=_or(o.protocol, DEFAULT_CPU_TRAINING["protocol"] if default_run else "finetune"),
        epochs=_or(o.epochs, per_dataset["epochs"]), lr=o.lr, workers=_or(o.workers, per_dataset["workers"]),
        pretrained=_or(o.pretrained, default_run and DEFAULT_CPU_TRAINING["pretrained"]),
        checkpoint=o.checkpoint, cache_dir=o.cache_dir, results_dir=results_dir,
        run_id=o.run_id or resolve_resume(o.resume, results_dir) or new_run_id(),
        threads=_or(o.threads, default_threads()), **fixed)
    _check_device_available(cfg.device)
    if not cfg.cost_only:  # training: N is the dataset's (its cost rows too)
        cfg = dataclasses.replace(cfg, num_classes=dataset_classes(cfg.dataset, cfg.data_root))
    return cfg


def build_config(**options) -> RunConfig:
    """``resolve_config(RunOptions(**options))``: a configuration from keywords, the rest resolved."""
    return resolve_config(RunOptions(**options))


def _run_ids(results_dir: str) -> List[str]:
    """The run ids in a results folder, latest first (study files excluded)."""
    files = sorted(glob.glob(os.path.join(results_dir, "*.csv")), key=os.path.getmtime, reverse=True)
    return [os.path.splitext(os.path.basename(f))[0] for f in files
            if not os.path.basename(f).startswith("study-")]


def resolve_resume(resume: Optional[str], results_dir: str) -> str:
    """The run id ``--resume`` names ('last': the latest run); a run that is not in ``results_dir`` is an error
    that lists the latest few (resuming a typo would silently start a new run under that name)."""
    if not resume:
        return ""
    ids = _run_ids(results_dir)
    if resume == "last":
        if not ids:
            raise ValueError(f"--resume last: no runs in {results_dir!r}")
        return ids[0]
    if not os.path.exists(os.path.join(results_dir, f"{resume}.csv")):
        latest = ", ".join(ids[:5]) if ids else "none"
        raise ValueError(f"--resume {resume!r}: no such run in {results_dir!r}; latest runs: {latest} "
                         "(or --resume last)")
    return resume
