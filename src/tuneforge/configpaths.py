"""Paths in a config: the keys that hold file or directory paths, resolved against the config file's
directory when read, and written relative to a run directory into the run's own config.yaml (so that it
re-runs from any working directory). Kept beside config.py, which reads and checks everything else."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from .models.loading import EMBEDDED

# Keys that hold file or directory paths: in a config file they resolve against the file's directory.
PATH_KEYS = ("data.train", "data.validation", "data.test", "data.schema", "model", "forgetting.reference",
             "init_from")
NOT_PATHS = {"model": tuple(EMBEDDED), "forgetting.reference": ("builtin",)}


def _paths(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, str]]:
    """(key, the dict holding it, its leaf name, the path) for each path key of `data` set to a real path
    (not an embedded model's name or `builtin`). The dicts are `data`'s own: a caller that changes them
    copies `data` first (`_copy`)."""
    for key in PATH_KEYS:
        section, _, leaf = key.rpartition(".")
        node = data.get(section) if section else data
        value = node.get(leaf) if isinstance(node, dict) else None
        if isinstance(value, str) and value and value not in NOT_PATHS.get(key, ()):
            yield key, node, leaf, value


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}


def resolve_paths(raw: dict[str, Any], root: Path) -> dict[str, Any]:
    """The path keys of a config file read from `root` (its directory): a relative path names a file beside
    the config (`train: sentiment/train.jsonl` in examples/x.yaml is examples/sentiment/train.jsonl, from
    any working directory); a path found only under the working directory (configs written before paths
    were config-relative, and their runs) still works. Paths come out relative to the working directory
    when under it, else absolute; a path found nowhere is left as written, for its error to name."""
    out = _copy(raw)
    for _, node, leaf, value in _paths(out):
        found = next((p for p in (root / value, Path(value)) if p.exists()), None)
        if found is not None:
            node[leaf] = _tidy(found)
    return out


def _tidy(path: Path) -> str:
    full = os.path.abspath(path)
    here = os.getcwd()
    return os.path.relpath(full) if os.path.commonpath([full, here]) == here else full


def relative_paths(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """`data` (a dumped config) with its existing paths relative to `root`: a run's config.yaml names its
    inputs relative to itself, so it re-runs from any working directory and survives moving the project."""
    out = _copy(data)
    for _, node, leaf, value in _paths(out):
        if Path(value).exists():
            node[leaf] = os.path.relpath(os.path.abspath(value), os.path.abspath(root))
    return out


def absolute_paths(data: dict[str, Any]) -> dict[str, str]:
    """The existing paths of a dumped config, absolute (recorded beside the relative ones in a run's
    config.yaml, for when the run directory is copied away from what it names)."""
    return {key: os.path.abspath(value) for key, _, _, value in _paths(data) if Path(value).exists()}


def recorded_fallback(raw: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """`raw` (a run's resolved config) with each path that exists nowhere replaced by the absolute path the
    run recorded, where that one exists: the run directory was moved or copied, its inputs were not."""
    out = _copy(raw)
    for key, node, leaf, value in _paths(out):
        absolute = recorded.get(key)
        if not Path(value).exists() and isinstance(absolute, str) and Path(absolute).exists():
            node[leaf] = _tidy(Path(absolute))
    return out
