"""The process-group primitives of data-parallel training (``torchrun``): the rank context, collectives, buffer
averaging, and evaluation shards gathered back in dataset order. Without a process group (a plain ``python`` run)
every function here is the one-process version of itself. ``bench.train.training`` uses these; the ``torchrun`` entry
point is ``bench.train.distributed``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

# Scores are gathered this many bytes at a time per rank (class columns in chunks): Open Images' 9600 classes
# times 125k images would otherwise need 4.8 GB at once on every GPU.
GATHER_CHUNK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its global rank, its rank on this node, and how many processes there are."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """True when there are several processes to keep in step (a process group of size > 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, writes checkpoints and result rows."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (set by torchrun)") from None


def launched_by_torchrun() -> bool:
    """True when the environment says this is one of several processes (``WORLD_SIZE`` > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def current() -> DistContext:
    """The context of the initialized process group, or rank 0 of 1 when there is none."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), _env_int("LOCAL_RANK", 0), dist.get_world_size())
    return DistContext()


def init_distributed(backend: Optional[str] = None) -> DistContext:
    """Join the process group that torchrun describes in the environment; idempotent; rank 0 of 1 without torchrun.

    ``backend`` defaults to NCCL when CUDA is available (each process then uses GPU ``LOCAL_RANK``) and gloo
    otherwise. The rendezvous comes from torchrun's ``MASTER_ADDR``/``MASTER_PORT`` (the ``env://`` method).
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"unknown backend {backend!r}; valid: nccl, gloo")
    local_rank = _env_int("LOCAL_RANK", 0)
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend 'nccl' needs CUDA; use 'gloo' on CPU")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} GPUs: start "
                             "at most one process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return current()


def comm_device() -> torch.device:
    """Where tensors must be for a collective: the current GPU under NCCL, the CPU under gloo."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if current().enabled:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks (a new tensor on ``values``' device; a copy in one process)."""
    t = values.detach().to(comm_device(), copy=True)
    if current().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.to(values.device)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank: all ranks then take the same branch."""
    return bool(all_reduce_sum(torch.tensor([float(bool(flag))])).item() > 0)


def all_gather_objects(obj) -> List[object]:
    """``obj`` of every rank, in rank order (picklable objects; ``[obj]`` in one process)."""
    ctx = current()
    if not ctx.enabled:
        return [obj]
    out: List[object] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def average_buffers_(module: nn.Module) -> None:
    """Replace every floating-point buffer (BatchNorm running statistics) by its mean over the ranks, in place.

    Each rank's BatchNorm sees only its share of the batch, so its running statistics drift apart from the other
    ranks'; averaging after each step keeps the model, and the EMA made from it, identical on every rank (the
    running mean is then exactly the global batch's; the variance is the mean of the per-rank variances).
    Integer buffers (``num_batches_tracked``) advance alike on every rank.
    """
    ctx = current()
    bufs = [b for b in module.buffers() if b.dtype.is_floating_point]
    if not ctx.enabled or not bufs:
        return
    flat = torch.cat([b.detach().reshape(-1).to(comm_device(), torch.float32) for b in bufs])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    i = 0
    for b in bufs:
        b.copy_(flat[i:i + b.numel()].view_as(b))
        i += b.numel()


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shard_indices(num_samples: int, ctx: DistContext) -> List[int]:
    """The evaluation samples of rank ``ctx.rank``: ``DistributedSampler(shuffle=False, drop_last=False)``, i.e.
    samples ``rank, rank + W, ...``, padded by repeating the first samples so that every rank gets
    ``ceil(S / W)`` of them (the padding is dropped again when the scores are gathered)."""
    sampler = DistributedSampler(range(num_samples), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False,
                                 drop_last=False)
    return list(sampler)


def _gather_in_order(scores: torch.Tensor, indices: Sequence[int], num_samples: int, ctx: DistContext,
                     all_ranks: bool) -> Optional[np.ndarray]:
    """Gather every rank's (n, N) scores of samples ``indices`` into one (S, N) array in dataset order."""
    dev = comm_device()
    n, N = scores.shape
    idx = torch.as_tensor(list(indices), dtype=torch.long, device=dev)  # (n,), the same n on every rank
    got_idx = [torch.empty_like(idx) for _ in range(ctx.world_size)]
    dist.all_gather(got_idx, idx)
    # Padded order: position p = j * W + r holds sample got_idx[r][j]; positions >= S are the padding.
    order = torch.stack(got_idx, 1).reshape(-1).cpu()[:num_samples]  # (S,)
    if not torch.equal(torch.sort(order).values, torch.arange(num_samples)):
        raise RuntimeError(f"the ranks' shards do not cover the {num_samples} evaluation samples exactly once")
    keep = all_ranks or ctx.is_main
    out = np.empty((num_samples, N), dtype=np.float32) if keep else None
    cols = max(1, GATHER_CHUNK_BYTES // max(1, 4 * n * ctx.world_size))
    for c0 in range(0, N, cols):
        part = scores[:, c0:c0 + cols].to(dev, torch.float32).contiguous()  # (n, c)
        got = [torch.empty_like(part) for _ in range(ctx.world_size)]
        dist.all_gather(got, part)
        if keep:
            padded = torch.stack(got, 1).reshape(n * ctx.world_size, -1)[:num_samples].cpu().numpy()  # (S, c)
            out[order.numpy(), c0:c0 + part.shape[1]] = padded
    return out


