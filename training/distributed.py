"""Training on several processes: ``torchrun`` and PyTorch's DistributedDataParallel.

    torchrun --nproc-per-node 2 -m training train --config configs/demo.toml

torchrun starts one process per slot and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE`` and the rendezvous address; ``init`` joins the process group
(NCCL on CUDA, gloo on the CPU). Every process loads the same data and cuts the
same windows; each epoch's shuffled order is the same on every rank (one
seeded generator), and each global batch of ``train.batch_size`` windows is
dealt out round-robin, ``batch[rank::world]``. DDP averages the gradients
over the ranks, and each rank's loss is weighted by its share of the batch, so
a step follows the gradient of the whole batch's mean loss: the run is the
one-process run, up to the order of float sums (tests/test_distributed.py:
the same validation losses within 1e-4). A last batch with fewer windows than
ranks is dropped.

Only rank 0 validates: its validation loss is broadcast, so early stopping,
the learning-rate schedule and the best weights are the same decision on
every rank. Only rank 0 exports, scores and publishes; the others end after
training. The automatic recipe, which trains its candidates side by side in
processes of its own, runs in one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: torchrun's, or ``(0, 1)`` alone."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched() -> bool:
    """Whether torchrun (or an equivalent launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str) -> None:
    """Join the process group torchrun describes (once); NCCL for ``cuda``, gloo otherwise."""
    if not launched() or dist.is_initialized():
        return
    backend = "nccl" if device == "cuda" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)


def is_main() -> bool:
    return world()[0] == 0


def local_device(device: torch.device) -> torch.device:
    """This rank's card when several processes train on CUDA (``LOCAL_RANK``)."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def broadcast(value: float) -> float:
    """Rank 0's ``value`` on every rank (the same number alone)."""
    if world()[1] == 1:
        return value
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
