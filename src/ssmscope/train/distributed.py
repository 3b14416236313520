"""Training on more than one process: PyTorch's DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc_per_node=K -m ssmscope train ...`` starts K copies of the command with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; :func:`process_group` joins them (gloo on
CPU, NCCL on GPU, one GPU per process). Without those variables everything below is the identity
and training is the single-process loop, bit for bit.

How the K processes ("ranks") share the work, so that a step equals one process's step on the same
global batch of B functions:

* every rank reads and prepares the same data (split, vocabulary and batch schedule depend only on
  the seed), then works on its share of each global batch: positions r, r+K, r+2K, … for rank r,
  padded to the global batch's width;
* rank r's loss is its mean over its n_r functions times n_r·K/B. DDP averages the gradients over
  the ranks, so the update uses (1/K) Σ_r (K/B) Σ_{i ∈ r} ∇ℓ_i = (1/B) Σ_i ∇ℓ_i, the gradient of
  the global batch's mean loss;
* a rank whose share is empty (a last batch shorter than K) runs one function with weight 0: every
  rank must join the gradient all-reduce, and this one adds nothing;
* validation and test functions are dealt out over the ranks and the probabilities gathered, so
  every rank computes the same metrics; the train loss is summed over the ranks every step;
* only rank 0 touches the run directory (lock, config, metrics, checkpoints); a resume state is
  read by rank 0 and sent to the others, so nodes need not share a file system for the run;
* dropout draws from a per-rank seed (the same masks on every rank would correlate the shares);
  every rank's RNG state goes into checkpoint.pt, so --resume continues each rank's stream.

After every epoch the ranks compare a sha256 of their parameters; a difference stops the run.
"""

from __future__ import annotations

import gc
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from ..errors import SsmscopeError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes; world_size 1 is a plain run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")  # where collectives put their tensors (NCCL: this rank's GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's functions of a global batch, and the factor on their mean loss (see the module doc)."""
        if self.world_size == 1:
            return batch, 1.0
        mine = batch[self.rank :: self.world_size]
        if len(mine) == 0:
            return batch[:1], 0.0
        return mine, len(mine) * self.world_size / len(batch)

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks (float64)."""
        if self.world_size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.item()

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run by rank 0 only; every rank gets its result, or stops if it raised.

        Rank 0 re-raises its own exception; the others raise an SsmscopeError that names it, so no
        rank waits in a collective for a rank 0 that has stopped (writes to the run directory go
        through here).
        """
        if self.world_size == 1:
            return fn()
        outcome: list = [None]
        error = None
        if self.is_main:
            try:
                outcome[0] = ("ok", fn())
            except Exception as e:
                error, outcome[0] = e, ("error", f"rank 0 stopped ({type(e).__name__}: {e})")
        dist.broadcast_object_list(outcome, src=0)
        kind, value = outcome[0]
        if kind == "error":
            raise error or SsmscopeError(value)
        return value

    def same_everywhere(self, what: str, value: str) -> None:
        """An error on every rank unless every rank passed the same ``value`` (a digest of ``what``)."""
        values = self.gather(value)
        if len(set(values)) > 1:
            differ = [r for r, v in enumerate(values) if v != values[0]]
            raise SsmscopeError(
                f"rank(s) {differ} have another {what} than rank 0; start every process with the same "
                f"command and the same data file (same path and content on every node)"
            )

    def same_parameters(self, state_dict: dict[str, torch.Tensor], epoch: int) -> list[str]:
        """Every rank's :func:`parameter_digest` (none for a single process); an error naming the epoch if any two differ."""
        if self.world_size == 1:
            return []
        digests = self.gather(parameter_digest(state_dict))
        if len(set(digests)) > 1:
            raise SsmscopeError(
                f"epoch {epoch}: the parameters differ between ranks (sha256 prefixes {[d[:12] for d in digests]}); "
                f"the processes fell out of step, so the run is stopped: report it with the command"
            )
        return digests

    def dropout_seed(self, seed: int) -> int:
        """The torch seed of this rank's random stream during training (dropout)."""
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])


def parameter_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over every entry's name and raw bytes, in the state dict's order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def launched_ranks() -> int:
    """How many processes torchrun started (WORLD_SIZE; 1 without torchrun)."""
    return _environment_number("WORLD_SIZE", 1)


def launched_rank() -> int:
    """This process's rank as torchrun set it (RANK; 0 without torchrun)."""
    return _environment_number("RANK", 0)


def _environment_number(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise SsmscopeError(f"{name}={os.environ[name]!r} is not a number; start with torchrun, or unset it") from None


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[Ranks, torch.device]]:
    """Join the processes torchrun started (or one already joined) for the block.

    Yields this rank and the device it trains on: ``device`` itself, or for CUDA the GPU LOCAL_RANK.
    Without torchrun (WORLD_SIZE unset or 1) this is ``Ranks()`` and ``device``, and nothing is joined.
    """
    if dist.is_available() and dist.is_initialized():  # the caller set up the group itself
        if (dist.get_backend() == "nccl") != (device.type == "cuda"):
            raise SsmscopeError(f"the process group uses {dist.get_backend()} and --device is {device.type}: use NCCL with cuda, gloo with cpu")
        ranks = _this_rank(device)
        yield ranks, ranks.device
        return
    if launched_ranks() == 1:
        yield Ranks(), device
        return
    if device.type == "cuda":
        local_rank, count = _environment_number("LOCAL_RANK", 0), torch.cuda.device_count()
        if local_rank >= count:
            raise SsmscopeError(f"LOCAL_RANK {local_rank}: this node has {count} CUDA device(s); start at most {count} processes per node (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    except (ValueError, RuntimeError) as e:
        raise SsmscopeError(f"could not join the other training processes ({str(e).splitlines()[0]}); start with torchrun (README, 'More than one process')") from None
    try:
        ranks = _this_rank(device)
        yield ranks, ranks.device
        dist.barrier()  # finished: no rank leaves while another still talks to it
    finally:
        gc.collect()  # DDP and its reducer hold the group: free them before it goes
        dist.destroy_process_group()


def _this_rank(device: torch.device) -> Ranks:
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    return Ranks(dist.get_rank(), dist.get_world_size(), device)
