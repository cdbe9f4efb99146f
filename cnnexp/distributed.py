"""Multi-process training under torchrun: who this process is, and the process group."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) for a plain process."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started, even a single one (--nproc_per_node=1)."""
    return "LOCAL_RANK" in os.environ and "MASTER_ADDR" in os.environ


def init(device: torch.device) -> None:
    """Join the process group that torchrun described (nccl on GPUs, gloo on CPUs)."""
    if launched_by_torchrun() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL uses the current device of each process
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def active() -> bool:
    """True where this process trains in a process group (DDP), of one process or more."""
    return dist.is_available() and dist.is_initialized()


def backend() -> str | None:
    """The process group's backend (nccl, gloo), or None outside DDP."""
    return dist.get_backend() if active() else None


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if active():
        dist.destroy_process_group()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
