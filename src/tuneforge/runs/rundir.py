"""The run directory: created only after the inputs are valid, never silently overwritten, locked while
a process writes it, and every file in it written atomically (temp file, fsync, rename).

`check` finds every reason to refuse a run directory without writing to it; the train recipe calls it before
loading anything, and `prepare` (called once every input check has passed) runs it again, then creates,
reuses or replaces the directory. `--overwrite` replaces only a recognisable tuneforge run, never one
holding a file the config reads, and replaces it by renames: the old run is moved aside, the new
directory created, and only then the old one deleted.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import TuneforgeError
from .reading import is_tuneforge_config

FINISHED_MARK = "eval.json"  # a run is complete once eval.json exists
LOCK = ".lock"
# Everything tuneforge itself writes at the top of a run directory (train, report, export).
RUN_ENTRIES = frozenset({"config.yaml", "data_audit.json", "metrics.jsonl", "eval.json", "report.html",
                         "curves.png", LOCK, "tb", "checkpoints", "model", "export", "predictions",
                         "audit.json"})  # audit.json: `tuneforge audit RUN`
PLOT_PREFIXES = ("confusion_", "reliability_")  # per-split plots: confusion_test.png, reliability_test.png
# Files only a tuneforge run has; a directory with none of them is not recognisably a run.
MARKERS = ("config.yaml", "data_audit.json", "metrics.jsonl", "eval.json", LOCK)
REPLACED = ".replaced-"  # `.NAME.replaced-PID`: an old run moved aside while --overwrite replaces it


def check(run_dir: Path, overwrite: bool = False, resume: bool = False,
          inputs: dict[str, str] | None = None) -> None:
    """Raise the TuneforgeError `prepare` would raise, writing nothing (but creating output_dir).

    `inputs` maps config keys to the files the run reads (data, model, reference, init_from): a run
    directory holding one of them is never deleted by --overwrite."""
    _check_parent(run_dir.parent)
    if run_dir.exists() and not run_dir.is_dir():
        raise TuneforgeError(f"{run_dir} exists and is not a directory; pick another name (name=...)")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    why = not_a_run(run_dir)
    if why:
        raise TuneforgeError(f"{run_dir} exists and is not a tuneforge run directory ({why}); tuneforge neither "
                             "overwrites nor resumes it: move it away or choose another name (name=NEW)")
    if not (overwrite or resume):
        raise TuneforgeError(f"run directory {run_dir} already exists; pass --overwrite to replace it, "
                             "--resume to continue it, or choose another name (name=NEW)")
    if in_use(run_dir):
        raise TuneforgeError(f"{run_dir} is in use by another tuneforge process; wait for it to finish "
                             "or choose another name (name=NEW)")
    if overwrite:  # --overwrite beats resume
        inside = input_inside(run_dir, inputs or {})
        if inside:
            key, path = inside
            raise TuneforgeError(f"`{key}` = {shorten(path)} lies inside {run_dir}, which --overwrite would delete; "
                                 "move it out of the run directory, or choose another name (name=NEW)")
    elif (run_dir / FINISHED_MARK).exists():
        raise TuneforgeError(f"run {run_dir} already finished ({FINISHED_MARK} exists), nothing to resume; "
                             "pass --overwrite to train it again, or choose another name (name=NEW)")


def prepare(run_dir: Path, overwrite: bool = False, resume: bool = False,
            inputs: dict[str, str] | None = None) -> Path:
    """Create `run_dir` for a new run, reuse it to resume, or (--overwrite) replace the old run in it."""
    check(run_dir, overwrite, resume, inputs)
    _sweep_replaced(run_dir)
    if overwrite and run_dir.is_dir() and any(run_dir.iterdir()):
        aside = run_dir.with_name(f".{run_dir.name}{REPLACED}{os.getpid()}")
        with lock(run_dir):  # never move a directory another process is writing
            os.replace(run_dir, aside)
        _mkdir(run_dir)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        _mkdir(run_dir)
    return run_dir


def check_output(path: Path, overwrite: bool, ours: Callable[[str], bool], writer: str, elsewhere: str) -> None:
    """The same safety for a directory of another command's outputs (advise's): its parent writable before any
    work starts, never a directory where a file is, never into a directory holding what `writer` does not write
    (`ours` says what it does), an earlier output replaced only with --overwrite. `elsewhere`: the way out."""
    _check_parent(path.parent)
    if path.exists() and not path.is_dir():
        raise TuneforgeError(f"{path} exists and is not a directory; {elsewhere}")
    if not path.is_dir() or not any(path.iterdir()):
        return
    foreign = sorted(p.name for p in path.iterdir() if not ours(p.name))
    if foreign:
        raise TuneforgeError(f"{path} holds {shorten(foreign[0])}, which {writer} does not write; {writer} writes "
                             f"only into its own directory: {elsewhere}")
    if not overwrite:
        raise TuneforgeError(f"{path} already holds {writer}'s output; pass --overwrite to replace it, or {elsewhere}")


def not_a_run(run_dir: Path) -> str:
    """'' when `run_dir` is recognisably a tuneforge run, else what shows it is not.

    A run holds only what tuneforge writes there, at least one of its marker files, and a config.yaml,
    if any, that tuneforge wrote (it records its provenance)."""
    names = sorted(p.name for p in run_dir.iterdir())
    foreign = [n for n in names if not _ours(n)]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        return f"it holds {shorten(foreign[0])}{more}, which tuneforge does not write"
    if not any(m in names for m in MARKERS):
        return "it has none of a run's files (config.yaml, metrics.jsonl, eval.json, .lock)"
    config = run_dir / "config.yaml"
    if "config.yaml" in names and not is_tuneforge_config(config):
        return "its config.yaml was not written by tuneforge"
    return ""


def _ours(name: str) -> bool:
    """A top-level name tuneforge writes in a run directory (temp files of atomic writes included)."""
    return name in RUN_ENTRIES or (name.startswith(PLOT_PREFIXES) and name.endswith(".png")) \
        or (name.startswith(".") and (name.endswith(".tmp") or name.startswith(".model.")))


def input_inside(run_dir: Path, inputs: dict[str, str]) -> tuple[str, str] | None:
    """The first (config key, path) of `inputs` that lies inside `run_dir` (or is it)."""
    root = run_dir.resolve()
    for key, path in inputs.items():
        target = Path(path).resolve()
        if target == root or root in target.parents:
            return key, path
    return None


def in_use(run_dir: Path) -> bool:
    """Whether another process holds the run directory's lock (probed without creating or writing it)."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDWR)
    except OSError:
        return False
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on `fd` without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _check_parent(parent: Path) -> None:
    """output_dir exists (created if need be) and a directory can be made in it."""
    _mkdir(parent, "output directory")
    try:  # os.access says yes to root even where the file system refuses (sysfs, read-only mounts)
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".tuneforge-probe-"))
    except OSError:
        raise TuneforgeError(f"output directory {parent} is not writable; set output_dir to a writable place") \
            from None


def _mkdir(path: Path, what: str = "run directory") -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TuneforgeError(f"cannot create {what} {path} ({e.strerror}); set output_dir to a writable place") \
            from None


def _sweep_replaced(run_dir: Path) -> None:
    """Delete old runs a killed --overwrite had moved aside but not yet deleted."""
    prefix = f".{run_dir.name}{REPLACED}"
    for p in run_dir.parent.iterdir():
        if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def shorten(value: Any, limit: int = 80) -> str:
    """repr of a value, cut so that an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + "…" + text[-4:]


@contextlib.contextmanager
def lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory; a second writer fails at once with a message."""
    path = run_dir / ".lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        if not _try_lock(fd):
            raise TuneforgeError(f"{run_dir} is in use by another tuneforge process; wait for it to finish "
                                 "or choose another name (name=NEW)")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise TuneforgeError(f"disk full while writing {path}; free space and rerun with --resume") from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
