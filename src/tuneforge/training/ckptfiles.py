"""A checkpoint's files on disk: written and fsynced, renamed into place, checked by size and sha256.

training/checkpoint.py decides what a checkpoint holds; this module only writes, checks and trims files.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..errors import TuneforgeError

FORMAT = 1
STATE_JSON = "state.json"
TMP_PREFIX = ".tmp-"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
