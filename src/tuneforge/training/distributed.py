"""Training on several processes, GPUs and machines: world info, joining and leaving the process group, each
rank's share of every batch, gathered evaluation, the rank-0 gate and ending every rank when one fails.

The launchers are the usual ones — `torchrun`, `accelerate launch` (which runs torchrun's launcher), SLURM
`srun torchrun` — and all of them hand a process the same environment (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which is all this module reads. The engine is torch.distributed
itself: DistributedDataParallel, FSDP2's `fully_shard` and torch.distributed.checkpoint. accelerate's
Accelerator got in the way in four places (accelerate 1.15): `prepare(dataloader)` shards a DataLoader and,
with its default `even_batches`, repeats examples so every process gets a full batch, where our batch order is
a list of index lists derived from (seed, epoch) and evaluation must count each example once; its mixed
precision and `backward` duplicate the loop's autocast, NaN guard and loss weighting; `save_state` pickles
optimizer and RNG state, where our checkpoints are pickle-free; its FSDP2 path wraps modules by a policy from
its own config, where sharding each transformer block is one call here.

Semantics: `train.batch_size` is per device. The epoch's batch order is built for the global batch
(batch_size × processes) from (seed, epoch) exactly as one process builds it, and rank r takes every
world-th example of each global batch, its loss weighted by its share so the gradient is that of the whole
global batch: N processes with batch B step like one process with batch N·B.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from ..errors import TuneforgeError

STRATEGIES = ("single", "ddp", "fsdp")
FIT_SHARE = 0.7       # auto: full fine-tuning whose training state needs more than this share of one device → FSDP
STATE_BYTES = 16      # per trainable parameter: fp32 weight, gradient and AdamW's two moments
POLL_S = 0.2          # how often each process looks for another's failure
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among `size` processes, and on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def nodes(self) -> int:
        return max(1, self.size // max(self.local_size, 1))


def world_from_env(env: Any = None) -> World:
    """The World a launcher described in the environment (one process when it says nothing)."""
    env = os.environ if env is None else env
    values = {}
    for key in ENV_KEYS:
        text = env.get(key)
        if text is None:
            continue
        try:
            values[key] = int(text)
        except ValueError:
            raise TuneforgeError(f"environment variable {key}={text!r} is not a number; launch with torchrun or "
                                 "accelerate launch, which set it") from None
    size = values.get("WORLD_SIZE", 1)
    rank = values.get("RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise TuneforgeError(f"RANK={rank} with WORLD_SIZE={size}: a rank goes from 0 to WORLD_SIZE-1")
    local_size = values.get("LOCAL_WORLD_SIZE", size)
    return World(rank, size, values.get("LOCAL_RANK", rank % max(local_size, 1)), local_size)


# ---------------------------------------------------------------- joining, failing and leaving

class _Process:
    """This process's membership: the world, the store other processes' failures show up in, the watchdog."""

    world: World | None = None     # None until `start`
    store: Any = None
    prefix: str = ""
    watching = threading.Event()   # set while a peer's failure or disappearance must end this process
    generation = 0                 # each `start` of a watch (one per train call) ends the previous watchdog
    reported = threading.Lock()    # whoever takes it (main thread or watchdog) speaks for this process


def start() -> World:
    """Join the process group the launcher set up (once per process) and watch for other ranks' failures.

    CUDA: NCCL for tensors and gloo for the small CPU-side objects (cuda:nccl,cpu:gloo); CPU: gloo."""
    world = world_from_env()
    if world.size == 1 or torch.distributed.is_initialized():
        _Process.world = world
        if _Process.store is not None and not _Process.watching.is_set():
            _arm()  # the next run of this process (cross-validation folds)
        return world
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)
    backend = "cuda:nccl,cpu:gloo" if torch.cuda.is_available() else "gloo"
    try:
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    except (RuntimeError, ValueError) as e:
        raise TuneforgeError(f"cannot join the other {world.size - 1} processes of this run "
                             f"({str(e).splitlines()[0]}); launch with torchrun or accelerate launch") from None
    _Process.world = world
    _watch(world)
    return world


def _watch(world: World) -> None:
    """A second client of the launcher's store (MASTER_ADDR:MASTER_PORT) and a thread polling it."""
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port:
        return
    _Process.store = torch.distributed.TCPStore(host, int(port), is_master=False, wait_for_workers=False,
                                                timeout=datetime.timedelta(seconds=30))
    _Process.prefix = (f"tuneforge/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/"
                       f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/")
    _arm()


def _arm() -> None:
    _Process.generation += 1
    _Process.watching.set()
    threading.Thread(target=_watchdog, args=(_Process.generation,), name="tuneforge-peers", daemon=True).start()


def _watchdog(generation: int) -> None:
    """End this process when another one failed (it printed the error) or the store's host vanished."""
    while _Process.watching.is_set() and generation == _Process.generation:
        time.sleep(POLL_S)
        if not _Process.watching.is_set():
            return
        try:
            failed = _Process.store.check([_Process.prefix + "failed"])
        except Exception:  # the store's host (rank 0, or torchrun's agent) is gone without a word
            failed = None
        if not _Process.watching.is_set() or generation != _Process.generation or not (failed or failed is None):
            continue
        if not _Process.reported.acquire(blocking=False):
            return  # the main thread is reporting its own failure
        if failed is None:
            _say("error: lost contact with the process that coordinates this run (rank 0 or the launcher): it "
                 "stopped without a word (killed?); continue from the last checkpoint with --resume")
        os._exit(2 if failed else 1)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report(error: BaseException) -> bool:
    """This process failed with `error`: tell the others (they end at once, silently, exit 2) and say whether
    this process is the one to print the error line (the first to fail, so the user sees one line)."""
    try:
        world = _Process.world or world_from_env()  # before `start`: the launcher's word
    except TuneforgeError:
        return True
    if world.size == 1:
        return True
    if not _Process.reported.acquire(blocking=False):
        return False
    _Process.watching.clear()  # this process's own watchdog stands down
    if _Process.store is None:  # not joined yet: every process fails alike (the config), rank 0 says it
        return world.main
    try:
        first = _Process.store.add(_Process.prefix + "failed", 1) == 1
    except Exception:  # nobody left to tell
        return True
    if first:
        time.sleep(2 * POLL_S)  # let every watchdog see the mark before this process (maybe the store's host) exits
    return first


def peer_failed() -> bool:
    """Whether another process already reported a failure (its line is the one the user sees)."""
    if _Process.store is None:
        return False
    try:
        return bool(_Process.store.check([_Process.prefix + "failed"]))
    except Exception:  # the store's host is gone: nobody has said anything
        return False


def crashed(error: BaseException) -> int | None:
    """A failure that is no user mistake, on a process of a distributed run: the exit status after at most one
    line (another process failed first, or went away), or None when this process shows the traceback (a bug;
    the others are told to stop)."""
    if peer_failed():
        return 2
    if lost_peer(error):
        if report(error):
            _say(f"error: lost contact with another process of this run ({str(error).splitlines()[0][:160]}); "
                 "it stopped without a word (killed?): continue from the last checkpoint with --resume")
        return 1
    report(error)
    return None


def lost_peer(error: BaseException) -> bool:
    """Whether `error` is a collective that failed because another process went away."""
    text = str(error)
    return isinstance(error, getattr(torch.distributed, "DistError", ())) or any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL error"))


def done() -> None:
    """Every rank got here: stop watching (a rank that leaves is no failure from now on) and wait until every
    watchdog has stopped, so that rank 0 — the store's host under a plain launcher — may leave first."""
    if _Process.world.size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        _Process.watching.clear()
        torch.distributed.barrier()


def stop() -> None:
    """Leave the process group (after `done`, at the end of a command)."""
    _Process.watching.clear()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def refuse_launch(command: str) -> None:
    """Commands that start their own processes refuse to run under a multi-process launcher."""
    if world_from_env().size > 1:
        raise TuneforgeError(f"`tuneforge {command}` trains each run in a process of its own; run it without "
                             "torchrun/accelerate launch (each run can be trained on several devices with "
                             "`torchrun --nproc-per-node N $(which tuneforge) train CONFIG`)")


# ---------------------------------------------------------------- the engine

class Forward(nn.Module):
    """Runs `fn(model)` as this module's forward, so DDP and FSDP see every forward pass, whatever the task
    calls inside it (the instruction task calls the body and the lm_head itself, not model.forward)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[[nn.Module], Any]) -> Any:
        return fn(self.model)


class Engine:
    """How this process takes part in training: one process ("single"), DDP, or FSDP2."""

    def __init__(self, world: World, device: torch.device, strategy: str = "single", reason: str = ""):
        self.world, self.device, self.strategy, self.reason = world, device, strategy, reason
        self.wrapped: nn.Module | None = None

    @property
    def main(self) -> bool:
        return self.world.main

    @property
    def size(self) -> int:
        return self.world.size

    @property
    def sharded(self) -> bool:
        """Parameters and optimizer state are split across ranks (FSDP): saving and loading are collective."""
        return self.strategy == "fsdp"

    def summary(self) -> dict[str, Any]:
        """eval.json's and config.yaml's record of how the run was distributed."""
        backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
        return {"strategy": self.strategy, "world_size": self.size, "nodes": self.world.nodes,
                "processes_per_node": self.world.local_size, "backend": backend, "device": self.device.type}

    # ------------------------------------------------------------------ data
    def global_batch(self, per_device: int) -> int:
        return per_device * self.size

    def shard(self, idx: list[int]) -> tuple[list[int], float]:
        """This rank's examples of one global batch and the weight of its mean loss (its share × world size,
        as DDP averages gradients). A rank left without an example gets one at weight 0: it still takes part
        in the gradient's all-reduce."""
        if self.size == 1:
            return idx, 1.0
        mine = idx[self.world.rank::self.size]
        if not mine:
            return idx[:1], 0.0
        return mine, len(mine) * self.size / len(idx)

    def share(self, units: int | None, weight: float) -> float:
        """The weight of this rank's loss on its share of a global batch: `weight` (its share of the examples)
        when the loss is a per-example mean, else its share of the loss's units (supervised tokens) over all
        ranks — summed across them, as HF Trainer counts items across devices — so the gradient is exactly the
        global batch's. Every rank calls this once per global batch."""
        if units is None:
            return weight
        mine = float(units if weight else 0)
        total = torch.tensor(mine)  # on the CPU (gloo, also beside NCCL): no wait for the device's queue
        torch.distributed.all_reduce(total)
        return mine * self.size / float(total) if float(total) else 0.0

    # ------------------------------------------------------------------ collectives (no-ops on one process)
    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if self.size == 1:
            return obj
        box = [obj if self.main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """`fn()` run on rank 0 only; every rank gets its result."""
        return self.broadcast(fn() if self.main else None)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def step_totals(self, loss: torch.Tensor, tokens: int) -> tuple[torch.Tensor, int]:
        """The whole step's mean loss and token count from this rank's weighted part of them."""
        if self.size == 1:
            return loss, tokens
        both = torch.stack([loss.float(), torch.tensor(float(tokens), device=loss.device)])
        torch.distributed.all_reduce(both)
        return both[0] / self.size, int(both[1].item())

    @staticmethod
    def local(t: torch.Tensor) -> torch.Tensor:
        """A plain tensor from a DTensor (FSDP's gradient norm), else `t` itself."""
        return t.full_tensor() if hasattr(t, "full_tensor") else t

    # ------------------------------------------------------------------ the model
    def wrap(self, model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
        """Put `model` on this rank's device and wrap it for the strategy; returns the model training uses
        (parameters, checkpoints, saving); the wrapper is only ever called through `loss` and `call`."""
        if self.strategy == "single":
            return model.to(self.device)
        if self.strategy == "ddp":
            import inspect

            from torch.nn.parallel import DistributedDataParallel

            DDP_ARGS = inspect.signature(DistributedDataParallel).parameters

            model.to(self.device)
            # buffers (position ids) never change: no broadcast before every forward
            name = "forward_sync_buffers" if "forward_sync_buffers" in DDP_ARGS else "broadcast_buffers"
            sync = {name: False}
            self.wrapped = DistributedDataParallel(Forward(model), gradient_as_bucket_view=True, **sync)
            return model
        from .fsdp import shard_model

        self.wrapped = shard_model(Forward(model), model, self.device, dtype)
        return model

    def loss(self, task: Any, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """The task's loss on `batch`, through the wrapper (what DDP's gradient hooks and FSDP's all-gathers need)."""
        return task.loss(model, batch) if self.wrapped is None else self.wrapped(lambda m: task.loss(m, batch))

    def call(self, model: nn.Module, fn: Callable[[nn.Module], Any]) -> Any:
        """`fn(model)` outside training (evaluation, probes) through the wrapper. FSDP keeps the root's
        parameters gathered after a forward until its backward; with no backward they are resharded here."""
        if self.wrapped is None:
            return fn(model)
        out = self.wrapped(fn)
        if self.sharded:
            self.wrapped.reshard()
        return out

    def accumulating(self, last: bool) -> ContextManager[Any]:
        """DDP: no gradient all-reduce for the micro-batches before a step's last one (the sum is the same)."""
        if self.strategy == "ddp" and not last and self.wrapped is not None:
            return self.wrapped.no_sync()
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, task: Any, model: nn.Module, examples: list[Any], batch_size: int,
                 device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
        """`task.evaluate` on the whole split, whatever the number of processes.

        DDP: each rank evaluates a contiguous share of the examples (no padding, no repeats) and the per-example
        results are gathered to every rank before the metrics, when the task can (Task.shards_evaluation);
        otherwise every rank evaluates the whole split — exact and simple, no faster than one device.
        FSDP: every forward pass is a collective, so every rank evaluates the whole split in step.
        Rank 0's metrics are broadcast: early stopping decides the same everywhere."""
        if self.size == 1:
            return task.evaluate(model, examples, batch_size, device, dtype)
        if self.sharded:
            metrics = self.call(model, lambda m: task.evaluate(m, examples, batch_size, device, dtype))
        elif task.shards_evaluation:
            rank, n = self.world.rank, len(examples)
            lo, hi = n * rank // self.size, n * (rank + 1) // self.size
            part = task.evaluate_shard(model, examples[lo:hi], batch_size, device, dtype)
            metrics = task.merge_shards(self.gather(part), examples)
        else:
            metrics = task.evaluate(model, examples, batch_size, device, dtype)
        return self.broadcast(metrics)


SINGLE = Engine(World(), torch.device("cpu"))  # the default of code paths that never distribute


def choose(setting: str, world: World, method: Any, model: nn.Module, device: torch.device) -> tuple[str, str]:
    """(strategy, why) for `train.distributed` on this world: auto is DDP for parameter-efficient methods and
    for full fine-tuning that fits one device, FSDP2 for full fine-tuning that does not."""
    if world.size == 1:
        return "single", "one process"
    if setting != "auto":
        return setting, f"train.distributed: {setting}"
    from ..methods.base import PARAMETER_EFFICIENT

    if method.family == PARAMETER_EFFICIENT:
        return "ddp", f"auto: {method.name} trains a small update on a frozen base, so each device holds a copy"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    need = STATE_BYTES * trainable
    if device.type != "cuda":
        return "ddp", "auto: full fine-tuning on CPUs (host memory is shared by the processes anyway)"
    have = torch.cuda.get_device_properties(device).total_memory
    verdict = "fsdp" if need > FIT_SHARE * have else "ddp"
    return verdict, (f"auto: full fine-tuning needs ~{need / 2 ** 30:.1f} GiB for weights, gradients and AdamW "
                     f"state, {'more' if verdict == 'fsdp' else 'less'} than {FIT_SHARE:.0%} of one device's "
                     f"{have / 2 ** 30:.0f} GiB")


def engine_for(world: World, device: torch.device) -> Engine:
    """This process's engine before the strategy is chosen (the data is read and vetted through it)."""
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    return Engine(world, device)


def describe(engine: Engine, batch_size: int, grad_accum: int) -> str:
    """The run log's line: strategy, world, and the effective batch."""
    w = engine.world
    where = f"{w.size} processes on {w.nodes} node{'s' if w.nodes > 1 else ''}" if w.size > 1 else "1 process"
    effective = batch_size * w.size * grad_accum
    return (f"distributed: {engine.strategy} on {where} ({engine.reason}); effective batch {effective} = "
            f"{batch_size} per device × {w.size} device{'s' if w.size > 1 else ''} × grad_accum {grad_accum}")
