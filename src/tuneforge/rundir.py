"""The run directory: created only after the inputs are valid, never silently overwritten, locked while
a process writes it, and every file in it written atomically (temp file, fsync, rename)."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import TuneforgeError

FINISHED_MARK = "eval.json"  # a run is complete once eval.json exists


def prepare(run_dir: Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Create `run_dir` for a new run (or reuse it to resume); refuse to clobber an existing run."""
    parent = run_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TuneforgeError(f"cannot create output directory {parent} ({e.strerror}); "
                             "set output_dir to a writable place") from None
    if not os.access(parent, os.W_OK):
        raise TuneforgeError(f"output directory {parent} is not writable; set output_dir to a writable place")
    if run_dir.exists() and not run_dir.is_dir():
        raise TuneforgeError(f"{run_dir} exists and is not a directory; pick another name (name=...)")
    if run_dir.exists() and any(run_dir.iterdir()) and (overwrite or not resume):  # --overwrite beats resume
        if not overwrite:
            raise TuneforgeError(f"run directory {run_dir} already exists; pass --overwrite to replace it, "
                                 "--resume to continue it, or choose another name (name=NEW)")
        with lock(run_dir):  # never delete a directory another process is writing
            pass
        shutil.rmtree(run_dir)
    elif resume and (run_dir / FINISHED_MARK).exists():
        raise TuneforgeError(f"run {run_dir} already finished ({FINISHED_MARK} exists), nothing to resume; "
                             "pass --overwrite to train it again, or choose another name (name=NEW)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TuneforgeError(f"cannot create run directory {run_dir} ({e.strerror}); "
                             "set output_dir to a writable place") from None
    return run_dir


@contextlib.contextmanager
def lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory; a second writer fails at once with a message."""
    path = run_dir / ".lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise TuneforgeError(f"{run_dir} is in use by another tuneforge process; wait for it to finish "
                                     "or choose another name (name=NEW)") from None
            raise
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


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def require_run(run_dir: Path) -> Path:
    """A finished run directory, or an error that says what is wrong with the path."""
    if not run_dir.is_dir():
        raise TuneforgeError(f"run directory {run_dir} not found (train one with: tuneforge train CONFIG)")
    if not (run_dir / "model").is_dir():
        raise TuneforgeError(f"{run_dir} has no model/ (the run did not finish; resume it with --resume)")
    return run_dir
