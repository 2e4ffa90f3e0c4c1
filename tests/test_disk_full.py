"""A really full disk: the run directory on a small tmpfs, so the kernel itself says ENOSPC and safetensors
wraps it in its own error type (tests/test_bad_input.py fakes the OSError; this is the real thing).

One `error:` line, exit 2, no temporary leftovers, the last good checkpoint kept; and the advice in the
line works: after the disk grows, `--resume` finishes the run. Skipped where tmpfs cannot be mounted.

Sizes (tiny BERT of tests/helpers_tiny.py, full fine-tuning, measured): a checkpoint is 11.5 MiB
(trainable 3.8 MiB + optimizer state 7.6 MiB), the final model/ 4.5 MiB, everything else a few KiB.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
from helpers_tiny import make_tiny_bert, sentiment_rows, tiny_train_config, write_config, write_jsonl

from tuneforge import cli

MiB = 2 ** 20


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("disk-full") / "tiny-bert")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """mount(size) -> a fresh tmpfs of `size` bytes; resize(path, size) grows it; all unmounted after."""
    mounts: list[Path] = []

    def mount(size: int) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(path)
        return path

    try:
        yield mount
    finally:
        for path in mounts:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow(path: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err[-3000:]
    return lines[0]


def leftovers(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.startswith((".tmp", ".model"))]


def config(tmp_path: Path, model: Path, disk: Path, **train: object) -> Path:
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(30))  # 24 train rows: 6 steps of 4
    cfg = tiny_train_config(model, data, disk / "runs", name="full", epochs=1, **train)
    return write_config(tmp_path / "c.yaml", **cfg)


def train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def test_full_disk_at_a_checkpoint(tmp_path: Path, model_dir: Path, small_disk, capsys) -> None:
    disk = small_disk(18 * MiB)  # step-2 fits (11.5 MiB); step-4 beside it does not (23 MiB)
    path = config(tmp_path, model_dir, disk, checkpoint_every=2, keep_checkpoints=1)
    rc, err = train(["train", str(path), "--quiet"], capsys)
    line = one_error_line(err)
    assert rc == 2
    run = disk / "runs" / "full"
    assert "disk full while writing checkpoint step-4" in line and "step-2" in line and "--resume" in line
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2"]
    assert not leftovers(run) and not (run / "model").exists()
    grow(disk, 64 * MiB)
    rc, err = train(["train", str(path), "--quiet", "--resume"], capsys)
    assert rc == 0, err[-3000:]
    assert (run / "model" / "model.safetensors").exists() and (run / "eval.json").exists()


@pytest.mark.parametrize("checkpoint", [False, True])
def test_full_disk_at_the_final_save(tmp_path: Path, model_dir: Path, small_disk, capsys, checkpoint: bool) -> None:
    # without checkpoints the model (4.5 MiB) does not fit in 3 MiB; with the last step's checkpoint
    # (11.5 MiB) it does not fit in the 2.5 MiB left of 14 MiB
    disk = small_disk(14 * MiB if checkpoint else 3 * MiB)
    path = config(tmp_path, model_dir, disk, **({"checkpoint_every": 100, "keep_checkpoints": 1} if checkpoint else {}))
    rc, err = train(["train", str(path), "--quiet"], capsys)
    line = one_error_line(err)
    assert rc == 2
    run = disk / "runs" / "full"
    assert "disk full while writing" in line and str(run / "model") in line and "--resume" in line
    assert ("step-6 is kept" in line) == checkpoint
    assert not leftovers(run) and not (run / "model").exists() and not (run / "eval.json").exists()
    if checkpoint:
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-6"]
    grow(disk, 64 * MiB)
    rc, err = train(["train", str(path), "--quiet", "--resume"], capsys)
    assert rc == 0, err[-3000:]
    assert (run / "model" / "model.safetensors").exists() and (run / "eval.json").exists()
