"""Atomic checkpoints for exact resume, stored without pickle.

One checkpoint is a directory `checkpoints/step-N/`:

    trainable.safetensors   the trainable parameters (LoRA/adapter + head; every weight for full fine-tuning)
    best.safetensors        the best weights so far, when they differ from the current ones (restore-best
                            survives a resume); hard-linked from the previous checkpoint when unchanged
    state.safetensors       every other tensor: optimizer moments and step counts, torch/cuda RNG states
    state.json              everything else: loop state (step, epoch, micro-batch position, early stopping,
                            eval history), optimizer hyper-parameters, LR scheduler, python/numpy RNG, the
                            train config, and the size and sha256 of every file above (written last)

Several processes (training/distributed.py): rank 0 writes the directory, with every rank's random state
(`rng_others` beside rank 0's `rng`); under FSDP the trainable weights and optimizer state are sharded: every rank
writes its shards into `sharded/` (training/fsdp.py) and rank 0 checksums them with the rest. A run resumes
on another number of processes when batch_size × processes (the global batch, and so the batch order) stays
the same; a checkpoint of one process or DDP does not resume under FSDP.

It is written into `checkpoints/.tmp-step-N-*`, every file fsynced, then renamed into place, so a
`step-N/` directory is complete or absent. A run killed at any instant resumes from the newest one
whose files all match the sizes and checksums recorded in state.json; one that does not (truncated or
corrupted later, on disk) is named in a note, set aside as `step-N.corrupt` and the one before it is
used. Temporary leftovers are swept away.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import TrainConfig
from ..errors import TuneforgeError
from .device import rng_state, set_rng_state
from .distributed import SINGLE, Engine
from .fsdp import SHARDED, load_sharded, save_sharded
from .loop import LoopState
from .ckptfiles import (FORMAT, STATE_JSON, TMP_PREFIX, _fsync_dir, _load_tensors, _replace_dir, _save_tensors,
                        _write_synced, damage, file_sha256, is_complete, truncate_metrics, write_failure)
from .treecodec import decode, encode

__all__ = ["Checkpointer", "Resumed", "damage", "is_complete", "truncate_metrics", "write_failure"]
STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_TENSORS = "state.safetensors"
TRAINABLE, BEST = "trainable.safetensors", "best.safetensors"


@dataclass
class Resumed:
    """What `restore` hands back to the loop: the progress and the best weights seen so far."""

    state: LoopState
    best_weights: dict[str, torch.Tensor] | None
    path: Path


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


class Checkpointer:
    """Saves and restores checkpoints under `dir`; `note` tells the user what happened."""

    def __init__(self, directory: Path, cfg: TrainConfig, method: Any, resume: bool = False,
                 metrics: Path | None = None, note: Callable[[str], None] = _stderr, engine: Engine = SINGLE,
                 attachments: dict[str, Any] | None = None):
        self.dir, self.cfg, self.method = Path(directory), cfg, method
        self.resume, self.metrics, self.note, self.engine = resume, metrics, note, engine
        # more state to carry, by name: objects with state_dict/load_state_dict (privacy.dp: accountant, noise RNG)
        self.attachments = attachments or {}
        self._best_file: tuple[int, Path] | None = None  # (best_step, a file on disk holding those weights)

    # ------------------------------------------------------------------ when
    def due(self, step: int, end_of_epoch: bool, total: int) -> bool:
        """Every `checkpoint_every` steps, at each epoch end and at the last step; never when unset."""
        every = self.cfg.checkpoint_every
        return bool(every) and (step % every == 0 or end_of_epoch or step == total)

    # ------------------------------------------------------------------ save
    def save(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: LoopState, is_best: bool,
             best_weights: dict[str, torch.Tensor] | None = None) -> Path:
        """Write `step-N/` atomically, then prune old checkpoints; disk errors become a TuneforgeError.
        Collective on several processes (every rank calls it; rank 0 writes, FSDP ranks write their shards)."""
        final, engine = self.dir / f"step-{state.step}", self.engine
        rngs = engine.gather(rng_state())  # each rank's own stream (dropout masks differ per rank)
        best = best_weights if best_weights is not None and not is_best and state.best_step != state.step else None
        tmp: Path | None = None
        files: dict[str, int] = {}
        try:
            tmp = Path(engine.on_main(lambda: self._new_tmp(state.step)))
            shards = save_sharded(tmp / SHARDED, model, optimizer, best) if engine.sharded else None
            if engine.main:
                files = self._write(tmp, model, optimizer, scheduler, state, best, rngs, shards)
                _replace_dir(tmp, final)
                _fsync_dir(self.dir)
        except BaseException as e:
            if tmp is not None and engine.main:
                shutil.rmtree(tmp, ignore_errors=True)
            why = write_failure(e)
            if why is None:
                raise
            raise self._disk_error(why, state.step) from None
        if not engine.main:
            return final
        if BEST in files:
            self._best_file = (state.best_step, final / BEST)
        elif state.best_step == state.step and TRAINABLE in files:
            self._best_file = (state.step, final / TRAINABLE)
        self._prune(state.best_step)
        return final

    def _new_tmp(self, step: int) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        return tempfile.mkdtemp(dir=self.dir, prefix=f"{TMP_PREFIX}step-{step}-")

    def _write(self, tmp: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: LoopState,
               best: dict[str, torch.Tensor] | None, rngs: list[Any], shards: Any) -> dict[str, int]:
        """Rank 0's part: the weights (unless sharded), the state tree, and state.json last."""
        files: dict[str, int] = {}
        tree: dict[str, Any] = {"loop": dataclasses.asdict(state)}
        if shards is None:
            files[TRAINABLE] = _save_tensors(trainable_state(model), tmp / TRAINABLE, state.step)
            if best is not None:
                files[BEST] = self._save_best(best, tmp / BEST, state.best_step)
            tree["optimizer"] = optimizer.state_dict()
        else:
            files.update({f"{SHARDED}/{p.name}": p.stat().st_size for p in sorted((tmp / SHARDED).iterdir())})
        tree.update({"scheduler": scheduler.state_dict(), "rng": rngs[0],
                     **{name: part.state_dict() for name, part in self.attachments.items()}})
        if len(rngs) > 1:
            tree["rng_others"] = rngs[1:]  # ranks 1, 2, ...
        tensors: dict[str, torch.Tensor] = {}
        encoded = encode(tree, tensors, "")
        files[STATE_TENSORS] = _save_tensors(tensors, tmp / STATE_TENSORS, state.step)
        meta = {"format": FORMAT, "step": state.step, "epoch": state.epoch, "micro": state.micro,
                "best_step": state.best_step, "method": getattr(self.method, "name", None),
                "train_config": dataclasses.asdict(self.cfg), "files": files,
                "sha256": {name: file_sha256(tmp / name) for name in files}, "state": encoded,
                "layout": "replicated" if shards is None else "sharded", "strategy": self.engine.strategy,
                "world_size": self.engine.size, "global_batch": self.engine.global_batch(self.cfg.batch_size)}
        if shards is not None:
            meta.update({"optimizer_shards": shards, "has_best": best is not None})
        _write_synced(tmp / STATE_JSON, (json.dumps(meta) + "\n").encode("utf-8"))
        _fsync_dir(tmp / SHARDED)
        _fsync_dir(tmp)
        return files

    def _save_best(self, best: dict[str, torch.Tensor], path: Path, best_step: int) -> int:
        """Hard-link the best weights from the checkpoint that already holds them; write them otherwise."""
        if self._best_file is not None and self._best_file[0] == best_step and self._best_file[1].exists():
            with contextlib.suppress(OSError):
                os.link(self._best_file[1], path)
                return path.stat().st_size
        return _save_tensors(best, path, best_step)

    def _disk_error(self, why: str, step: int) -> TuneforgeError:
        last = self.latest()
        keep = f"the last complete checkpoint is {last}" if last else "no earlier checkpoint exists"
        return TuneforgeError(f"{why} while writing checkpoint step-{step} in {self.dir}; {keep}. "
                              "Free space (or lower train.keep_checkpoints) and rerun with --resume")

    def _prune(self, best_step: int) -> None:
        """Keep the newest `keep_checkpoints` and the best; delete by rename first so no half-deleted
        directory ever looks like a checkpoint."""
        steps = [s for s, _ in self.complete()]
        keep = set(steps[-self.cfg.keep_checkpoints:]) | {best_step}
        for s in steps:
            if s not in keep:
                doomed = self.dir / f"{TMP_PREFIX}old-step-{s}"
                with contextlib.suppress(OSError):
                    os.replace(self.dir / f"step-{s}", doomed)
                    shutil.rmtree(doomed, ignore_errors=True)

    # ------------------------------------------------------------------ find
    def complete(self) -> list[tuple[int, Path]]:
        """(step, path) of every complete checkpoint, oldest first."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            m = STEP_DIR.match(p.name)
            if m and p.is_dir() and is_complete(p):
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1][1] if done else None

    def sweep(self) -> None:
        """Remove temporary directories left by a process killed while saving or pruning."""
        if self.dir.is_dir():
            for p in self.dir.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(p, ignore_errors=True)

    # ------------------------------------------------------------------ restore
    def restore(self, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> Resumed | None:
        """On resume, load the newest complete checkpoint into model/optimizer/scheduler/RNG.

        Also cuts metrics.jsonl back to the checkpoint's step, so lines logged after it (by the killed
        process) are not duplicated. Returns None when starting from step 0. On several processes rank 0
        picks the checkpoint (setting damaged ones aside) and every rank loads it from the shared run directory.
        """
        if not self.resume:
            return None
        choice = self.engine.on_main(self._choose)
        if choice is None:
            return None
        step, path = choice[0], Path(choice[1])
        if not (path / STATE_JSON).is_file():
            raise TuneforgeError(f"process rank {self.engine.world.rank} cannot read {path}: resuming on several "
                                 "machines needs the run directory on a filesystem they all mount")
        # A complete checkpoint that does not load is an error, not a silent fresh start: it usually
        # means the model or method changed since, and the user must decide.
        resumed = self._load(path, model, optimizer, scheduler)
        if self.engine.main:
            truncate_metrics(self.metrics, step)
        s = resumed.state
        self.note(f"resumed from {path} (step {s.step}, epoch {s.epoch + 1}, batch {s.micro} of the epoch)")
        return resumed

    def _choose(self) -> tuple[int, str] | None:
        """Rank 0: sweep leftovers and pick the newest good checkpoint (None: start from step 0)."""
        self.sweep()
        newest = self._newest_good()
        if newest is None:
            truncate_metrics(self.metrics, 0)
            hint = "" if self.cfg.checkpoint_every else " (set train.checkpoint_every to write checkpoints)"
            self.note(f"resume: no complete checkpoint in {self.dir}{hint}; starting from step 0")
            return None
        return newest[0], str(newest[1])

    def _newest_good(self) -> tuple[int, Path] | None:
        """(step, path) of the newest checkpoint whose files match their recorded sizes and checksums.
        Each newer one is named in a note and renamed to `step-N.corrupt`, so that it is never picked
        again nor counted as one of the checkpoints to keep (pruning would delete good ones for it)."""
        steps = sorted((int(m.group(1)), p) for p in (self.dir.iterdir() if self.dir.is_dir() else [])
                       if (m := STEP_DIR.match(p.name)) and p.is_dir())
        while steps:
            step, path = steps.pop()
            problem = damage(path)
            if problem is None:
                return step, path
            aside = path.with_name(f"{path.name}.corrupt")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(path, aside)
            older = f"falling back to {steps[-1][1].name}" if steps else "no older checkpoint is left"
            self.note(f"resume: checkpoint {path} is damaged ({problem}); {older} (the damaged one is kept as "
                      f"{aside.name}: delete it once inspected)")
        return None

    def _load(self, path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> Resumed:
        meta = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise TuneforgeError(f"format {meta.get('format')} is not {FORMAT}")
        self._check_world(meta, path)
        params = dict(trainable_named(model))
        tree = decode(meta["state"], _load_tensors(path / STATE_TENSORS))
        if meta.get("layout") == "sharded":
            best = load_sharded(path / SHARDED, model, optimizer, meta["optimizer_shards"], meta.get("has_best", False))
            weights = {n: p.detach().clone() for n, p in params.items()}
        else:
            weights = _load_tensors(path / TRAINABLE)
            _check_match(weights, params, path)
            best = _load_tensors(path / BEST) if (path / BEST).exists() else None
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(weights[name])
        try:
            if "optimizer" in tree:
                optimizer.load_state_dict(tree["optimizer"])
            scheduler.load_state_dict(tree["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise TuneforgeError(f"optimizer state does not fit this model ({e})") from None
        state = _loop_state(tree["loop"])
        for name, part in self.attachments.items():
            if name not in tree:
                raise TuneforgeError(f"{path} holds no {name} state (it was written without it); start over with "
                                     "--overwrite")
            part.load_state_dict(tree[name])
        if best is None and state.best_step == state.step and state.best_metric is not None:
            best = weights  # the checkpoint was taken at the best step: its weights are the best
        if best is not None:
            _check_match(best, params, path)
            best = {n: best[n].to(p.device) for n, p in params.items()}
        self._note_config_changes(meta.get("train_config", {}), meta)
        rng = self._own_rng(tree, meta)
        if rng is not None:
            set_rng_state(rng)  # last: nothing after this may consume randomness
        return Resumed(state, best, path)

    def check_resumable(self) -> None:
        """Refuse, before anything is written, what the newest checkpoint cannot continue as on this world."""
        done = self.complete()
        if done:
            self._check_world(json.loads((done[-1][1] / STATE_JSON).read_text(encoding="utf-8")), done[-1][1],
                              quiet=True)

    def _check_world(self, meta: dict[str, Any], path: Path, quiet: bool = False) -> None:
        """Refuse what cannot continue on this many processes: an unsharded checkpoint under FSDP, or another
        global batch (batch_size × processes), which would be another batch order."""
        then, now = meta.get("world_size", 1), self.engine.size
        if meta.get("layout", "replicated") == "replicated" and self.engine.sharded:
            raise TuneforgeError(f"{path} was written by {then} process{'es' if then > 1 else ''} without FSDP and "
                                 "FSDP loads only its own sharded checkpoints; resume with train.distributed: ddp")
        before = meta.get("global_batch") or meta.get("train_config", {}).get("batch_size", 0) * then
        if then == now or before == self.engine.global_batch(self.cfg.batch_size):
            if then != now and not quiet:
                self.note(f"resume: {path.name} was written by {then} processes, continuing on {now} with the same "
                          f"global batch ({before}): the same batch order; dropout's random streams start afresh")
            return
        fix = (f"set train.batch_size={before // now} so that batch_size × {now} processes = {before}"
               if before % now == 0 else f"resume on a number of processes that divides {before}")
        raise TuneforgeError(f"{path} was written by {then} process{'es' if then > 1 else ''} with a global batch of "
                             f"{before} and would continue with {self.engine.global_batch(self.cfg.batch_size)}, "
                             f"another batch order; {fix}")

    def _own_rng(self, tree: dict[str, Any], meta: dict[str, Any]) -> Any:
        """This rank's saved random state: its own when the world is the same size, rank 0's for rank 0 and
        none for the others when it is not (their streams stay as seeded)."""
        if self.engine.main:
            return tree["rng"]
        others = tree.get("rng_others") or []
        return others[self.engine.world.rank - 1] if len(others) + 1 == self.engine.size else None

    def _note_config_changes(self, saved: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        now = dataclasses.asdict(self.cfg)
        same = {"threads", "keep_checkpoints", "distributed"}
        if meta and meta.get("global_batch") == self.engine.global_batch(self.cfg.batch_size):
            same.add("batch_size")  # another number of processes with the same global batch
        changed = [k for k in now if k not in same and k in saved and saved[k] != now[k]]
        for k in changed:
            self.note(f"train.{k} changed since the checkpoint ({saved[k]!r} → {now[k]!r}): "
                      "the resumed run will not match an uninterrupted one")


# ---------------------------------------------------------------- weights

def trainable_named(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes: for LoRA a few MB, for full fine-tuning every weight."""
    return {n: p.detach() for n, p in trainable_named(model)}


def _check_match(saved: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter], path: Path) -> None:
    missing = [n for n in params if n not in saved]
    extra = [n for n in saved if n not in params]
    wrong = [n for n in params if n in saved and saved[n].shape != params[n].shape]
    if missing or extra or wrong:
        what = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                else f"{wrong[0]} has shape {tuple(saved[wrong[0]].shape)}, expected {tuple(params[wrong[0]].shape)}")
        raise TuneforgeError(f"{path} does not match this model and method ({what}); resume with the same "
                             "model and method, or start over with --overwrite")


def _loop_state(values: dict[str, Any]) -> LoopState:
    """LoopState from a checkpoint; fields added since then keep their defaults."""
    names = {f.name for f in dataclasses.fields(LoopState)}
    return LoopState(**{k: v for k, v in values.items() if k in names})
