"""Accuracy cells: train a head (``finetune`` or ``probe``) or take given weights (``eval``), evaluate on the
evaluation split, and return one result row with cost and accuracy side by side.

Nothing is selected on the evaluation split: the row reports the last epoch's weights (``map``/``top1``) and
their EMA (``map_ema``/``top1_ema``) separately.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch

from ..analysis.metrics import multilabel_metrics, sigmoid, singlelabel_metrics
from ..backbones.model import assemble, build_model, create_backbone
from ..backbones.pretrained import data_config_of
from ..datasets import create_dataset
from ..datasets.words import embed_class_names  # the sentence-embedding model itself is imported only when it is needed
from ..heads._base import Head
from ..measure.flops import model_cost_cached
from ..run.results import environment, weights_label
from .features import feature_cache_key
from .knn import knn_label, knn_logits, knn_macs, knn_scores
from .training import TrainConfig, extract_features, predict, seed_everything, train_finetune, train_probes

# A from-scratch backbone (no --pretrained / --checkpoint) needs a larger learning rate than the recipe's 1e-4,
# which assumes ImageNet-pretrained weights; a head trained alone on cached features too.
LR_PRETRAINED = 1e-4
LR_FROM_SCRATCH = 1e-3
# Heads probed on pretrained features (a few hundred steps) fit the training split better at a larger rate. Chosen
# on the training loss alone (the default run, seed 0, `bench run --seeds 0 --no-timing --lr X`: last-epoch loss of
# gap / txdec / mldecoder 149 / 155 / 160 at 1e-3, 117 / 129 / 133 at 3e-3, 83 / 132 / 122 at 1e-2): the largest
# rate at which every head's loss still falls.
LR_PROBE_PRETRAINED = 3e-3


def training_memory_format(device: str) -> torch.memory_format:
    """The memory format a model is trained and evaluated in: channels-last on a CPU, where oneDNN's
    convolutions, batch norms and max pools run ~25% faster in it (a ResNet training step measured at one thread);
    the values are the same up to floating-point rounding. Elsewhere the default layout."""
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def default_cache_dir() -> str:
    base = os.environ.get("HEADBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "headbench")
    return os.path.join(base, "features")


def checkpoint_dir_for(cfg, backbone_name: str, head_spec: str, seed: int) -> str:
    """Where a training cell keeps its last checkpoint: ``<results-dir>/checkpoints/<run_id>/<cell>``, so that a
    killed run, rerun with ``--resume``, continues the interrupted training instead of starting it again."""
    name = f"{backbone_name}-{head_spec}-{cfg.dataset}-{cfg.img_size}-{cfg.epochs}-seed{seed}"
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:80]
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return os.path.join(cfg.results_dir, "checkpoints", cfg.run_id, f"{slug}-{digest}")


def ema_decay_for(steps: int, recipe: float = 0.9997) -> float:
    """The recipe's EMA decay, shortened for short runs so that the EMA averages about the last tenth of the
    steps (at 0.9997 it averages ~3300 steps, more than a CPU run makes)."""
    return min(recipe, max(0.9, 1.0 - 10.0 / max(steps, 1)))


def _word_embeddings(ds, head) -> Optional[torch.Tensor]:
    """Class embeddings for a word-query head: the dataset's own word vectors, else its class names embedded by
    the sentence-embedding model (bench.datasets.words)."""
    if getattr(head, "queries_kind", None) != "word":
        return None
    E = getattr(ds, "class_embeddings", None)
    if E is None:
        E = embed_class_names(list(ds.class_names))
    E = torch.as_tensor(np.asarray(E), dtype=torch.float32)
    if E.shape[1] != head.word_dim:
        raise ValueError(f"{ds.spec}: class embeddings are {E.shape[1]}-d but the head {head.spec!r} expects "
                         f"word_dim={head.word_dim}; add word_dim={E.shape[1]} to the head spec")
    return E


def _metrics(logits: np.ndarray, ds, targets: np.ndarray, suffix: str = "") -> dict:
    if ds.multilabel:
        unseen = list(ds.unseen) or None
        m = multilabel_metrics(sigmoid(logits), targets, unseen=unseen)
        keep = ("map", "cp", "cr", "cf1", "op", "or", "of1", "f1_at_3", "f1_at_5", "zsl_map", "gzsl_map",
                "map_no_positive_policy", "map_no_positive_classes")
    else:
        m = singlelabel_metrics(logits, targets)
        keep = ("top1", "top5")
    out = {k: v for k, v in m.items() if k in keep}
    if suffix:  # the EMA: only the headline metrics
        return {k + suffix: out[k] for k in ("map", "top1", "zsl_map") if k in out}
    return out


def chance_metrics(ds, targets: np.ndarray) -> dict:
    """The chance level of the evaluation split: what a predictor that ignores the image scores on it.

    Multi-label: a constant predictor (every image the same score), whose AP on a class is the class's share of
    positives (tied scores share one precision, as ``bench.analysis.metrics`` ranks them), so ``map_chance`` is the mean
    positive rate, on the classes and with the policy ``map`` uses; ``zsl_map_chance`` the same on the held-out
    classes. Single-label: ``top1_chance``, the top-1 of always answering the split's most frequent class. It is
    measured from the labels alone (no extra training, no random draw) and is a floor, not a bound: a head on a
    frozen random-weight backbone does a little better (about 7 mAP on `scenes` against 5.3 here), which is why
    a hypothesis asks its reference to beat chance by a stated amount (``Hypothesis.above_chance``).
    """
    if ds.multilabel:
        m = _metrics(np.zeros(targets.shape, dtype=np.float32), ds, targets)
        return {f"{k}_chance": m[k] for k in ("map", "zsl_map") if k in m}
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=ds.num_classes)
    return {"top1_chance": 100.0 * counts.max() / max(1, counts.sum())}


def _query_vector(head) -> Optional[torch.Tensor]:
    """A head's query embeddings as one flat vector (None when it has none)."""
    qs = head.query_parameters() if isinstance(head, Head) else {}
    return torch.cat([p.detach().flatten().float().cpu() for p in qs.values()]) if qs else None


def query_shift(before: Optional[torch.Tensor], head) -> Optional[float]:
    """How far training moved a head's queries: ||q - q0|| / ||q0|| (Frobenius, all query parameters); 0 for
    fixed queries, None for a head without queries."""
    after = _query_vector(head)
    if before is None or after is None:
        return None
    return float((after - before).norm() / before.norm().clamp_min(1e-12))


class Splits(NamedTuple):
    """The run's dataset: its training split (None for ``eval``: nothing is trained) and its evaluation split."""

    train: Optional[object]
    val: object


@dataclass(frozen=True)
class Predictions:
    """A head's scores on the evaluation split: ``logits`` (S, N) of the last weights, the ``targets`` they line
    up with, and ``logits_ema`` (S, N) of the weights' EMA (None without one)."""

    logits: np.ndarray
    targets: np.ndarray
    logits_ema: Optional[np.ndarray] = None


def _datasets(cfg, backbone_name: str) -> Splits:
    """(train split or None for ``eval``, evaluation split) of the run's dataset; with pretrained weights, images
    are resized with the backbone's own interpolation (its mean and std are applied inside the backbone)."""
    interpolation = data_config_of(backbone_name).interpolation if cfg.pretrained else "bilinear"
    train_ds = create_dataset(cfg.dataset, "train", root=cfg.data_root, img_size=cfg.img_size,
                              train_augment=cfg.protocol == "finetune",
                              interpolation=interpolation) if cfg.protocol != "eval" else None
    val_ds = create_dataset(cfg.dataset, "val", root=cfg.data_root, img_size=cfg.img_size, interpolation=interpolation)
    return Splits(train_ds, val_ds)


def _seen(val_ds) -> Optional[list]:
    return [i for i in range(val_ds.num_classes) if i not in set(val_ds.unseen)] if len(val_ds.unseen) else None


def _train_config(cfg, train_ds, seed: int) -> TrainConfig:
    finetune = cfg.protocol == "finetune"
    batch = cfg.train_batch_size
    trained_weights = bool(cfg.pretrained or cfg.checkpoint)
    lr = cfg.lr or (LR_PRETRAINED if finetune and trained_weights else
                    LR_PROBE_PRETRAINED if cfg.protocol == "probe" and trained_weights else LR_FROM_SCRATCH)
    steps = cfg.epochs * max(1, len(train_ds) // batch)
    return TrainConfig(epochs=cfg.epochs, batch_size=batch, lr=lr, seed=seed, device=cfg.device,
                       workers=cfg.workers, loss="asl" if train_ds.multilabel else "ce",
                       ema_decay=ema_decay_for(steps))


def _row(cfg, backbone_name: str, head_spec: str, seed: int, cost: dict, preds: Predictions, splits: Splits,
         outcome=None, shift: Optional[float] = None) -> dict:
    """One accuracy row; ``outcome`` is the training's ``TrainOutcome`` (None for ``eval``: no training)."""
    train_ds, val_ds = splits
    logits, targets = preds.logits, preds.targets
    train_s = outcome.train_s if outcome is not None else 0.0
    history = outcome.history if outcome is not None else []
    if not np.isfinite(logits).all():
        raise ValueError(f"{head_spec} on {backbone_name}: non-finite logits on the evaluation split")
    row = dict(run_id=cfg.run_id, backbone=backbone_name, head=head_spec, img_size=cfg.img_size,
               num_classes=val_ds.num_classes, device=cfg.device, dtype=cfg.dtype, channels_last=cfg.channels_last,
               compile=cfg.compile, dataset=cfg.dataset, protocol=cfg.protocol, epochs=cfg.epochs, seed=seed,
               weights=weights_label(cfg),
               **cost, **_metrics(logits, val_ds, targets), **chance_metrics(val_ds, targets),
               query_shift="" if shift is None else round(shift, 4), train_s=round(train_s, 2),
               train_loss=round(float(history[-1]["loss"]), 6) if history else "",
               train_images=len(train_ds) if train_ds is not None else "", eval_split="val",
               eval_images=len(val_ds), skipped_images=len(getattr(val_ds, "skipped", []))
               + len(getattr(train_ds, "skipped", []) if train_ds is not None else []),
               status="ok", **environment(cfg.device))
    if preds.logits_ema is not None:
        row.update(_metrics(preds.logits_ema, val_ds, targets, suffix="_ema"))
    return row


def _knn_row(cfg, backbone_name: str, seed: int, k: int, feats: dict, targets: np.ndarray, splits: Splits,
             backbone_cost: dict) -> dict:
    """The row of the k-NN baseline (``bench.train.knn``): no parameters, its MACs the similarity to every training
    vector, its ``train_s`` the time to pool and normalise the training bank (included in the scoring)."""
    val_ds = splits.val
    t0 = time.perf_counter()
    scores = knn_scores(feats["train"][0], feats["train"][1], feats["val"][0], val_ds.num_classes, k=k)
    train_s = time.perf_counter() - t0
    f = feats["train"][0]
    channels = f.shape[1] if f.dim() == 4 else f.shape[-1]
    gmacs_head = knn_macs(len(f), channels) / 1e9
    cost = dict(backbone_cost, params_head=0, gmacs_head=gmacs_head, gflops_head=2 * gmacs_head,
                params_total=backbone_cost.get("params_backbone", ""),
                params_trainable=0, gmacs_total=backbone_cost.get("gmacs_backbone", 0) + gmacs_head,
                gflops_total=backbone_cost.get("gflops_backbone", 0) + 2 * gmacs_head)
    logits = knn_logits(scores, val_ds.multilabel).numpy()
    row = _row(cfg, backbone_name, knn_label(k), seed, cost, Predictions(logits, targets), splits)
    row["train_s"] = round(train_s, 2)
    return row


def train_and_evaluate(cfg, backbone_name: str, head_spec: str, seed: int,
                       progress: Optional[Callable[[str], None]] = None) -> dict:
    """Train and evaluate one (backbone, head, seed) under ``cfg`` (a RunConfig); returns a result row.
    The ``probe`` protocol goes through ``train_and_evaluate_probes`` with one head (the same result)."""
    if cfg.protocol == "probe":
        errors: dict = {}
        rows = train_and_evaluate_probes(cfg, backbone_name, [head_spec], seed, progress=progress, errors=errors)
        if errors:
            raise errors[head_spec]
        return rows[0]
    say = progress or (lambda msg: None)
    finetune = cfg.protocol == "finetune"
    splits = _datasets(cfg, backbone_name)
    train_ds, val_ds = splits
    N = val_ds.num_classes
    seed_everything(seed)  # the same backbone weights for every head of a seed: heads differ only by themselves
    model = build_model(backbone_name, head_spec, N, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint,
                        img_size=cfg.img_size)
    queries_at_start = _query_vector(model.head)  # (K*D,): to record how far training moves them
    E = _word_embeddings(val_ds, model.head)
    cost = model_cost_cached(model, cfg.img_size, {"class_embeddings": E} if E is not None else None)
    device, batch = cfg.device, cfg.train_batch_size
    model = model.to(memory_format=training_memory_format(device))
    out, ema_model = None, None
    if finetune:
        tcfg = _train_config(cfg, train_ds, seed)
        say(f"finetune {backbone_name} + {head_spec} (seed {seed})")
        out = train_finetune(model, train_ds, tcfg, class_embeddings=E, columns=_seen(val_ds), progress=False,
                             checkpoint_dir=checkpoint_dir_for(cfg, backbone_name, head_spec, seed), resume=True)
        trained, ema_model = out.model, out.ema_model
    else:
        trained = model
    say(f"evaluate {backbone_name} + {head_spec} (seed {seed})")
    logits, targets = predict(trained, val_ds, batch_size=batch, device=device, class_embeddings=E,
                              workers=cfg.workers, return_targets=True)
    logits_ema = (predict(ema_model, val_ds, batch_size=batch, device=device, class_embeddings=E,
                          workers=cfg.workers) if ema_model is not None else None)
    shift = query_shift(queries_at_start, trained.head)
    return _row(cfg, backbone_name, head_spec, seed, cost, Predictions(logits, targets, logits_ema), splits, out,
                shift)


def _probe_models(cfg, backbone_name: str, head_specs: Sequence[str], num_classes: int, seed: int) -> dict:
    """``{spec: HeadModel}`` sharing one backbone, each head initialised exactly as ``build_model`` after
    ``seed_everything(seed)`` makes it (the random state right after the backbone is restored before each head),
    so that a head's weights do not depend on the heads built before it."""
    seed_everything(seed)
    backbone = create_backbone(backbone_name, pretrained=cfg.pretrained, img_size=cfg.img_size)
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    models = {}
    for spec in head_specs:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        models[spec] = assemble(backbone, spec, num_classes, backbone_name=backbone_name, checkpoint=cfg.checkpoint)
    return models


def _probe_features(cfg, backbone, backbone_name: str, splits: Splits) -> dict:
    """``{"train": (features, targets), "val": (features, targets)}``: the backbone's features of both splits,
    extracted once and cached on disk (``bench.train.features``)."""
    cache = cfg.cache_dir or default_cache_dir()
    feats = {}
    for split, ds in (("train", splits.train), ("val", splits.val)):
        key = feature_cache_key(backbone, backbone_name=backbone_name, dataset_spec=ds.spec, split=split,
                                img_size=cfg.img_size, data_fingerprint=ds.fingerprint)
        feats[split] = extract_features(backbone, ds, batch_size=cfg.train_batch_size, device=cfg.device,
                                        workers=cfg.workers, cache_dir=cache, cache_key=key, progress=False)
    return feats


def train_and_evaluate_probes(cfg, backbone_name: str, head_specs: Sequence[str], seed: int,
                              progress: Optional[Callable[[str], None]] = None,
                              errors: Optional[Dict[str, BaseException]] = None, knn: int = 0) -> List[dict]:
    """The ``probe`` protocol for every head of a (backbone, seed) at once: one backbone, its features extracted
    once (and cached on disk), the heads trained together on one pass over them per epoch
    (``training.train_probes``), each evaluated on the cached evaluation features. One row per head, equal to
    what that head gives alone; with ``knn`` > 0 one more, the k-NN baseline (``bench.train.knn``) on the same
    features. With ``errors`` (a dict) a head that fails is left out of the rows and its exception stored there;
    without it the first failure raises."""
    if cfg.protocol != "probe":
        raise ValueError(f"train_and_evaluate_probes is the probe protocol; this run's is {cfg.protocol!r}")
    if len(set(head_specs)) != len(head_specs):
        raise ValueError(f"head specs repeat: {list(head_specs)}")
    say = progress or (lambda msg: None)
    splits = _datasets(cfg, backbone_name)
    train_ds, val_ds = splits
    models = _probe_models(cfg, backbone_name, list(head_specs) or ["gap"], val_ds.num_classes, seed)
    backbone = next(iter(models.values())).backbone
    backbone_cost = {k: v for k, v in model_cost_cached(next(iter(models.values())), cfg.img_size).items()
                     if k in ("params_backbone", "gmacs_backbone", "gflops_backbone")}
    models = {spec: m for spec, m in models.items() if spec in head_specs}  # only the backbone when no heads
    queries_at_start = {spec: _query_vector(m.head) for spec, m in models.items()}
    E = {spec: _word_embeddings(val_ds, m.head) for spec, m in models.items()}
    costs = {spec: model_cost_cached(m, cfg.img_size, {"class_embeddings": E[spec]} if E[spec] is not None else None)
             for spec, m in models.items()}
    device, batch = cfg.device, cfg.train_batch_size
    say(f"features {backbone_name} (seed {seed})")
    feats = _probe_features(cfg, backbone, backbone_name, splits)
    say(f"probe {len(models)} heads on {backbone_name} features (seed {seed})")
    failed: Dict[str, BaseException] = {} if errors is None else errors
    outs = train_probes({spec: m.head for spec, m in models.items()}, feats["train"][0], feats["train"][1],
                        _train_config(cfg, train_ds, seed), class_embeddings=E, columns=_seen(val_ds),
                        progress=False, checkpoint_dirs={spec: checkpoint_dir_for(cfg, backbone_name, spec, seed)
                                                         for spec in models},
                        resume=True, errors=None if errors is None else failed) if models else {}
    targets = feats["val"][1].numpy()  # extracted with the images, so skipped images are already accounted
    rows = []
    for spec, out in outs.items():
        say(f"evaluate {backbone_name} + {spec} (seed {seed})")
        try:
            logits = predict(out.model, feats["val"][0], batch_size=batch, device=device, class_embeddings=E[spec])
            logits_ema = predict(out.ema_model, feats["val"][0], batch_size=batch, device=device,
                                 class_embeddings=E[spec])
            rows.append(_row(cfg, backbone_name, spec, seed, costs[spec], Predictions(logits, targets, logits_ema),
                             splits, out, query_shift(queries_at_start[spec], out.model)))
        except Exception as e:  # noqa: BLE001 (recorded per head when asked; the other heads keep their rows)
            if errors is None:
                raise
            failed[spec] = e
    if knn:  # after the heads, so that a table's first head (the one others are compared with) is a head
        say(f"k-NN baseline on {backbone_name} features (seed {seed})")
        rows.append(_knn_row(cfg, backbone_name, seed, knn, feats, targets, splits, backbone_cost))
    return rows
