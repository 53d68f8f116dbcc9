"""Training on several processes (``torchrun``): the process group, each rank's share of an epoch,
metrics every rank agrees on, and who writes.

``torchrun --nproc-per-node N -m trainer train ...`` starts N copies of the command with RANK,
WORLD_SIZE, LOCAL_RANK (and the rendezvous address) in their environment; ``distributed_run``
reads them, and without them (a plain ``python -m trainer``) it yields the single-process
context, under which every method below is a no-op and training is what it always was.

Gradients are averaged by ``torch.nn.parallel.DistributedDataParallel``. BatchNorm keeps plain
DDP semantics: each rank normalises by the statistics of its own share of the batch, the running
statistics are rank 0's (DDP broadcasts buffers before every forward pass; ``sync_buffers``
does it once more after each epoch, so evaluation and the saved model agree on every rank).
``SyncBatchNorm`` would normalise by the global batch but runs on CUDA only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn

logger = logging.getLogger(__name__)

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a run: rank ``rank`` of ``world_size``; ``enabled`` under torchrun
    (even with one process, which then runs the DDP code path), off for a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, config.json, last.pt and train.log."""
        return self.rank == 0

    def rank_batch(self, batch_size: int) -> int:
        """Each rank's share of the global batch ``batch_size`` (the config means the global one,
        so one config trains the same way on 1 process or N)."""
        if batch_size % self.world_size:
            raise ValueError(
                f"the batch size {batch_size} must be a multiple of the {self.world_size} processes "
                f"(each takes an equal share); use {batch_size + self.world_size - batch_size % self.world_size}"
            )
        if self.world_size > 1 and batch_size // self.world_size < 2:
            raise ValueError(
                f"the batch size {batch_size} leaves {batch_size // self.world_size} photo per process; "
                "BatchNorm needs at least 2: use a batch of at least 2 per process"
            )
        return batch_size // self.world_size

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's rows of an epoch's ``order`` (the same on every rank), as
        ``DistributedSampler`` splits it: padded by its own head to a multiple of the world size,
        then every ``world_size``-th row from ``rank``. Rank r's k-th batch of ``b / W`` rows and
        the other ranks' together are the rows of a single process's k-th batch of ``b``."""
        if not self.enabled:
            return order
        pad = -len(order) % self.world_size
        padded = torch.cat([order, order[:pad]]) if pad else order  # (N + pad,)
        return padded[self.rank :: self.world_size]  # ((N + pad) / W,)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: ``DistributedDataParallel`` around ``model`` (whose parameters it
        broadcasts from rank 0), or ``model`` itself. Unused parameters are expected: a batch
        routes to some categories' heads only."""
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of ``value`` over the ranks (a training loss: each rank's mean over equal shares)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        tdist.all_reduce(t)
        return float(t.item()) / self.world_size

    def from_main(self, value: float, device: torch.device) -> float:
        """Rank 0's ``value`` on every rank: the early-stopping score, so that every rank keeps the
        same epoch and stops at the same one however its own evaluation rounded."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        tdist.broadcast(t, src=0)
        return float(t.item())

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's BatchNorm running statistics on every rank."""
        if not self.enabled:
            return
        for buffer in model.buffers():
            tdist.broadcast(buffer, src=0)

    def epoch_generator(self, generator: torch.Generator) -> torch.Generator:
        """The generator of this rank's augmentation (and dropout) for one epoch.

        A single process keeps ``generator``. Under DDP ``generator`` must stay the same on every
        rank (it draws the epoch order), so each rank augments with its own generator seeded
        from one draw of it plus the rank, and reseeds dropout the same way: different random
        numbers on each rank, and a resumed run (``generator``'s state is in last.pt) repeats them.
        """
        if not self.enabled:
            return generator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        torch.manual_seed(seed + 2 * self.rank + 1)
        rank_generator = torch.Generator()
        rank_generator.manual_seed(seed + 2 * self.rank)
        return rank_generator

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()


SINGLE = DistContext()


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of a state dict's names, dtypes, shapes and values (memory layout aside), to see
    that every rank holds the same model."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def distributed_run(device: torch.device) -> Iterator[tuple[DistContext, torch.device]]:
    """The process group of a ``torchrun`` launch (gloo on a CPU, NCCL on CUDA, one GPU per
    local rank) and this rank's device, or ``(SINGLE, device)`` outside one."""
    if not all(name in os.environ for name in _ENV):
        yield SINGLE, device
        return
    ctx = DistContext(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        enabled=True,
    )
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if device.type == "cuda":
        tdist.init_process_group(backend="nccl", device_id=device)
    else:
        tdist.init_process_group(backend="gloo")
    logger.info("rank %d of %d on %s (%s)", ctx.rank, ctx.world_size, device, tdist.get_backend())
    try:
        yield ctx, device
    finally:
        tdist.destroy_process_group()
