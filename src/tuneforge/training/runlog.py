"""What a run writes while it trains: metrics.jsonl (one line per logged step) and TensorBoard scalars.

runs/reading.py reads metrics.jsonl back."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class RunLog:
    """Appends scalars to `metrics.jsonl` and `tb/`; `note` prints a line for the user and keeps it."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = True, quiet: bool = False):
        self.run_dir, self.quiet = run_dir, quiet
        self.notes: list[str] = []
        self._file = None
        self._tb = None
        if run_dir is not None:
            self._file = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
            if tensorboard:
                self._tb = self._writer()

    def scalars(self, step: int, epoch: float, split: str, values: dict[str, float]) -> None:
        row = {"step": step, "epoch": round(epoch, 4), "split": split,
               **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}}
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{split}/{key}", value, step)

    def restart_at(self, step: int) -> None:
        """After a resume from `step`: TensorBoard drops what a killed process logged past it (the checkpoint
        restore already cut metrics.jsonl back), so the curves show each step once."""
        if self._tb is not None:
            self._tb.close()
            self._tb = self._writer(purge_step=step + 1)

    def _writer(self, purge_step: int | None = None) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)

    def note(self, text: str) -> None:
        self.notes.append(text)
        if not self.quiet:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
