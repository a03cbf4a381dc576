"""Accuracy cells: train a head (``finetune`` or ``probe``) or take given weights (``eval``), evaluate on the
evaluation split, and return one result row with cost and accuracy side by side.

Nothing is selected on the evaluation split: the row reports the last epoch's weights (``map``/``top1``) and
their EMA (``map_ema``/``top1_ema``) separately.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import torch

from .results import environment

# A from-scratch backbone (no --pretrained / --checkpoint) needs a larger learning rate than the recipe's 1e-4,
# which assumes ImageNet-pretrained weights; a head trained alone on cached features too.
LR_PRETRAINED = 1e-4
LR_FROM_SCRATCH = 1e-3


def default_cache_dir() -> str:
    base = os.environ.get("HEADBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "headbench")
    return os.path.join(base, "features")


def checkpoint_dir_for(cfg, backbone_name: str, head_spec: str, seed: int) -> str:
    """Where a training cell keeps its last checkpoint: ``<results-dir>/checkpoints/<run_id>/<cell>``, so that a
    killed run, rerun with ``--resume``, continues the interrupted training instead of starting it again."""
    import hashlib
    import re

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
    the sentence-embedding model (bench.words)."""
    if getattr(head, "queries_kind", None) != "word":
        return None
    E = getattr(ds, "class_embeddings", None)
    if E is None:
        from .words import embed_class_names

        E = embed_class_names(list(ds.class_names))
    E = torch.as_tensor(np.asarray(E), dtype=torch.float32)
    if E.shape[1] != head.word_dim:
        raise ValueError(f"{ds.spec}: class embeddings are {E.shape[1]}-d but the head {head.spec!r} expects "
                         f"word_dim={head.word_dim}; add word_dim={E.shape[1]} to the head spec")
    return E


def _metrics(logits: np.ndarray, ds, targets: np.ndarray, suffix: str = "") -> dict:
    from .metrics import multilabel_metrics, sigmoid, singlelabel_metrics

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
    positives (tied scores share one precision, as ``bench.metrics`` ranks them), so ``map_chance`` is the mean
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
    from .heads._base import Head

    qs = head.query_parameters() if isinstance(head, Head) else {}
    return torch.cat([p.detach().flatten().float().cpu() for p in qs.values()]) if qs else None


def query_shift(before: Optional[torch.Tensor], head) -> Optional[float]:
    """How far training moved a head's queries: ||q - q0|| / ||q0|| (Frobenius, all query parameters); 0 for
    fixed queries, None for a head without queries."""
    after = _query_vector(head)
    if before is None or after is None:
        return None
    return float((after - before).norm() / before.norm().clamp_min(1e-12))


def train_and_evaluate(cfg, backbone_name: str, head_spec: str, seed: int,
                       progress: Optional[Callable[[str], None]] = None) -> dict:
    """Train and evaluate one (backbone, head, seed) under ``cfg`` (a RunConfig); returns a result row."""
    from .datasets import create_dataset
    from .features import feature_cache_key
    from .model import build_model
    from .training import TrainConfig, extract_features, predict, seed_everything, train_finetune, train_probe

    say = progress or (lambda msg: None)
    finetune = cfg.protocol == "finetune"
    train_ds = create_dataset(cfg.dataset, "train", root=cfg.data_root, img_size=cfg.img_size,
                              train_augment=finetune) if cfg.protocol != "eval" else None
    val_ds = create_dataset(cfg.dataset, "val", root=cfg.data_root, img_size=cfg.img_size)
    N = val_ds.num_classes
    seed_everything(seed)  # the same backbone weights for every head of a seed: heads differ only by themselves
    model = build_model(backbone_name, head_spec, N, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint,
                        img_size=cfg.img_size)
    queries_at_start = _query_vector(model.head)  # (K*D,): to record how far training moves them
    E = _word_embeddings(val_ds, model.head)
    from .flops import model_cost_cached

    cost = model_cost_cached(model, cfg.img_size, {"class_embeddings": E} if E is not None else None)
    seen = [i for i in range(N) if i not in set(val_ds.unseen)] if len(val_ds.unseen) else None

    device = cfg.device
    batch = cfg.train_batch_size
    lr = cfg.lr or (LR_PRETRAINED if finetune and (cfg.pretrained or cfg.checkpoint) else LR_FROM_SCRATCH)
    train_s = 0.0
    ema_model = None
    if cfg.protocol != "eval":
        steps = cfg.epochs * max(1, len(train_ds) // batch)
        tcfg = TrainConfig(epochs=cfg.epochs, batch_size=batch, lr=lr, seed=seed, device=device,
                           workers=cfg.workers, loss="asl" if train_ds.multilabel else "ce",
                           ema_decay=ema_decay_for(steps))
        ckpt = checkpoint_dir_for(cfg, backbone_name, head_spec, seed)
        if finetune:
            say(f"finetune {backbone_name} + {head_spec} (seed {seed})")
            out = train_finetune(model, train_ds, tcfg, class_embeddings=E, columns=seen, progress=False,
                                 checkpoint_dir=ckpt, resume=True)
            trained, ema_model = out.model, out.ema_model
            train_s = out.train_s
        else:
            say(f"features {backbone_name} (seed {seed})")
            cache = cfg.cache_dir or default_cache_dir()
            feats = {}
            for split, ds in (("train", train_ds), ("val", val_ds)):
                key = feature_cache_key(model.backbone, backbone_name=backbone_name, dataset_spec=ds.spec,
                                        split=split, img_size=cfg.img_size)
                feats[split] = extract_features(model.backbone, ds, batch_size=batch, device=device,
                                                workers=cfg.workers, cache_dir=cache, cache_key=key,
                                                progress=False)
            say(f"probe {head_spec} on {backbone_name} features (seed {seed})")
            out = train_probe(model.head, feats["train"][0], feats["train"][1], tcfg, class_embeddings=E,
                              columns=seen, progress=False, checkpoint_dir=ckpt, resume=True)
            train_s = out.train_s
            trained, ema_model = out.model, out.ema_model
    else:
        trained = model

    say(f"evaluate {backbone_name} + {head_spec} (seed {seed})")
    if cfg.protocol == "probe":
        targets = feats["val"][1].numpy()  # extracted with the images, so skipped images are already accounted
        logits = predict(trained, feats["val"][0], batch_size=batch, device=device, class_embeddings=E)
        logits_ema = predict(ema_model, feats["val"][0], batch_size=batch, device=device, class_embeddings=E)
    else:
        logits, targets = predict(trained, val_ds, batch_size=batch, device=device, class_embeddings=E,
                                  workers=cfg.workers, return_targets=True)
        logits_ema = (predict(ema_model, val_ds, batch_size=batch, device=device, class_embeddings=E,
                              workers=cfg.workers) if ema_model is not None else None)
    if not np.isfinite(logits).all():
        raise ValueError(f"{head_spec} on {backbone_name}: non-finite logits on the evaluation split")
    from .heads._base import Head

    trained_head = trained if isinstance(trained, Head) else trained.head
    shift = query_shift(queries_at_start, trained_head)
    row = dict(run_id=cfg.run_id, backbone=backbone_name, head=head_spec, img_size=cfg.img_size, num_classes=N,
               device=cfg.device, dtype=cfg.dtype, channels_last=cfg.channels_last, compile=cfg.compile,
               dataset=cfg.dataset, protocol=cfg.protocol, epochs=cfg.epochs, seed=seed, **cost,
               **_metrics(logits, val_ds, targets), **chance_metrics(val_ds, targets),
               query_shift="" if shift is None else round(shift, 4), train_s=round(train_s, 2),
               train_images=len(train_ds) if train_ds is not None else "", eval_split="val",
               eval_images=len(val_ds), skipped_images=len(getattr(val_ds, "skipped", []))
               + len(getattr(train_ds, "skipped", []) if train_ds is not None else []),
               status="ok", **environment(cfg.device))
    if logits_ema is not None:
        row.update(_metrics(logits_ema, val_ds, targets, suffix="_ema"))
    return row
