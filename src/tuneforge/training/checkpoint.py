"""Atomic checkpoints for exact resume, stored without pickle.

One checkpoint is a directory `checkpoints/step-N/`:

    trainable.safetensors   the trainable parameters (LoRA/adapter + head; every weight for full fine-tuning)
    best.safetensors        the best weights so far, when they differ from the current ones (restore-best
                            survives a resume); hard-linked from the previous checkpoint when unchanged
    state.safetensors       every other tensor: optimizer moments and step counts, torch/cuda RNG states
    state.json              everything else: loop state (step, epoch, micro-batch position, early stopping,
                            eval history), optimizer hyper-parameters, LR scheduler, python/numpy RNG, the
                            train config, and the size and sha256 of every file above (written last)

It is written into `checkpoints/.tmp-step-N-*`, every file fsynced, then renamed into place, so a
`step-N/` directory is complete or absent. A run killed at any instant resumes from the newest one
whose files all match the sizes and checksums recorded in state.json; one that does not (truncated or
corrupted later, on disk) is named in a note, set aside as `step-N.corrupt` and the one before it is
used. Temporary leftovers are swept away.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
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
from .loop import LoopState
from .treecodec import decode, encode

FORMAT = 1
STEP_DIR = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-"
STATE_JSON, STATE_TENSORS = "state.json", "state.safetensors"
TRAINABLE, BEST = "trainable.safetensors", "best.safetensors"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
                 metrics: Path | None = None, note: Callable[[str], None] = _stderr):
        self.dir, self.cfg, self.method = Path(directory), cfg, method
        self.resume, self.metrics, self.note = resume, metrics, note
        self._best_file: tuple[int, Path] | None = None  # (best_step, a file on disk holding those weights)

    # ------------------------------------------------------------------ when
    def due(self, step: int, end_of_epoch: bool, total: int) -> bool:
        """Every `checkpoint_every` steps, at each epoch end and at the last step; never when unset."""
        every = self.cfg.checkpoint_every
        return bool(every) and (step % every == 0 or end_of_epoch or step == total)

    # ------------------------------------------------------------------ save
    def save(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: LoopState, is_best: bool,
             best_weights: dict[str, torch.Tensor] | None = None) -> Path:
        """Write `step-N/` atomically, then prune old checkpoints; disk errors become a TuneforgeError."""
        final = self.dir / f"step-{state.step}"
        tmp: Path | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=f"{TMP_PREFIX}step-{state.step}-"))
            files = {TRAINABLE: _save_tensors(trainable_state(model), tmp / TRAINABLE, state.step)}
            if best_weights is not None and not is_best and state.best_step != state.step:
                files[BEST] = self._save_best(best_weights, tmp / BEST, state.best_step)
            tree = {"loop": dataclasses.asdict(state), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_state()}
            tensors: dict[str, torch.Tensor] = {}
            encoded = encode(tree, tensors, "")
            files[STATE_TENSORS] = _save_tensors(tensors, tmp / STATE_TENSORS, state.step)
            meta = {"format": FORMAT, "step": state.step, "epoch": state.epoch, "micro": state.micro,
                    "best_step": state.best_step, "method": getattr(self.method, "name", None),
                    "train_config": dataclasses.asdict(self.cfg), "files": files,
                    "sha256": {name: file_sha256(tmp / name) for name in files}, "state": encoded}
            _write_synced(tmp / STATE_JSON, (json.dumps(meta) + "\n").encode("utf-8"))
            _fsync_dir(tmp)
            _replace_dir(tmp, final)
            _fsync_dir(self.dir)
        except BaseException as e:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            why = write_failure(e)
            if why is None:
                raise
            raise self._disk_error(why, state.step) from None
        if BEST in files:
            self._best_file = (state.best_step, final / BEST)
        elif state.best_step == state.step:
            self._best_file = (state.step, final / TRAINABLE)
        self._prune(state.best_step)
        return final

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
        process) are not duplicated. Returns None when starting from step 0.
        """
        if not self.resume:
            return None
        self.sweep()
        newest = self._newest_good()
        if newest is None:
            truncate_metrics(self.metrics, 0)
            hint = "" if self.cfg.checkpoint_every else " (set train.checkpoint_every to write checkpoints)"
            self.note(f"resume: no complete checkpoint in {self.dir}{hint}; starting from step 0")
            return None
        step, path = newest
        # A complete checkpoint that does not load is an error, not a silent fresh start: it usually
        # means the model or method changed since, and the user must decide.
        resumed = self._load(path, model, optimizer, scheduler)
        truncate_metrics(self.metrics, step)
        s = resumed.state
        self.note(f"resumed from {path} (step {s.step}, epoch {s.epoch + 1}, batch {s.micro} of the epoch)")
        return resumed

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
        params = dict(trainable_named(model))
        weights = _load_tensors(path / TRAINABLE)
        _check_match(weights, params, path)
        tree = decode(meta["state"], _load_tensors(path / STATE_TENSORS))
        best = _load_tensors(path / BEST) if (path / BEST).exists() else None
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name])
        try:
            optimizer.load_state_dict(tree["optimizer"])
            scheduler.load_state_dict(tree["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise TuneforgeError(f"optimizer state does not fit this model ({e})") from None
        state = _loop_state(tree["loop"])
        if best is None and state.best_step == state.step and state.best_metric is not None:
            best = weights  # the checkpoint was taken at the best step: its weights are the best
        if best is not None:
            _check_match(best, params, path)
            best = {n: best[n].to(p.device) for n, p in params.items()}
        self._note_config_changes(meta.get("train_config", {}))
        set_rng_state(tree["rng"])  # last: nothing after this may consume randomness
        return Resumed(state, best, path)

    def _note_config_changes(self, saved: dict[str, Any]) -> None:
        now = dataclasses.asdict(self.cfg)
        changed = [k for k in now if k not in ("threads", "keep_checkpoints") and k in saved and saved[k] != now[k]]
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


# ---------------------------------------------------------------- files

def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, step: int) -> int:
    from safetensors import torch as st

    flat = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    st.save_file(flat, str(path), metadata={"step": str(step), "format": str(FORMAT)})
    _fsync_file(path)
    return path.stat().st_size


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise TuneforgeError(f"cannot read {path} ({e})") from None


def is_complete(path: Path) -> bool:
    """state.json parses and every file it lists exists with the recorded size (cheap: no file is read)."""
    try:
        meta = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
        files = meta["files"]
        return all((path / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def damage(path: Path) -> str | None:
    """What is wrong with a checkpoint, or None: state.json must parse and every file it lists must have
    the recorded size and sha256 (checkpoints written before checksums were stored are checked by size)."""
    if not (path / STATE_JSON).is_file():
        return f"{STATE_JSON} is missing"
    try:
        meta = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
        files, sums = meta["files"], meta.get("sha256", {})
        for name, size in files.items():
            if not (path / name).is_file():
                return f"{name} is missing"
            actual = (path / name).stat().st_size
            if actual != size:
                return f"{name} has {actual} bytes, state.json records {size}: truncated or overwritten"
            if name in sums and file_sha256(path / name) != sums[name]:
                return f"{name} does not match the sha256 recorded in state.json: corrupted"
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{STATE_JSON} does not parse"
    return None


# The cost, measured on 2 busy CPU cores (hashlib's sha256 uses the CPU's SHA extensions, ~0.7 GB/s from
# the page cache): a full fine-tuning checkpoint of MiniLM (260 MiB: weights + Adam moments) took 0.65 s
# to save, 0.34 s of it hashing; SmolLM2-135M's (1.6 GB) would take ~2.3 s more. zlib.crc32 hashed the
# same files in 60% of the time, but sha256 can be checked by hand (sha256sum) and is the usual choice.
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def write_failure(e: BaseException) -> str | None:
    """Why a write failed, for an OSError or the SafetensorError in which safetensors wraps one
    ("I/O error: No space left on device (os error 28)"); None when `e` is no write failure (a bug)."""
    from safetensors import SafetensorError

    if isinstance(e, OSError):
        code = e.errno
    elif isinstance(e, SafetensorError) and (m := re.search(r"\(os error (\d+)\)", str(e))):
        code = int(m.group(1))
    else:
        return None
    if code in DISK_FULL:
        return "disk full"
    return os.strerror(code) if code else str(e)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry durable (a directory fsync; a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        _fsync_file(path)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`; an existing `final` (a stale save of the same step) is moved aside first."""
    if final.exists():
        aside = final.with_name(f"{TMP_PREFIX}old-{final.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        os.replace(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, final)


def truncate_metrics(path: Path | None, step: int) -> None:
    """Cut metrics.jsonl after the last line with step <= `step` (and any torn last line), in place,
    so an open append handle keeps working."""
    if path is None or not path.exists():
        return
    data = path.read_bytes()
    keep = 0
    for line in data.splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n") or not isinstance(row, dict) or row.get("step", 0) > step:
            break
        keep += len(line)
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
