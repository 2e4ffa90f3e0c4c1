"""What a run writes while it trains: metrics.jsonl (one line per logged step) and TensorBoard.

TensorBoard tags follow Hugging Face Trainer's, so dashboards and scripts made for HF runs read ours:
`train/loss`, `train/learning_rate`, `train/grad_norm`, `train/tokens_per_s`, `eval/loss`, `eval/<metric>`
(validation during training), `test/<metric>` (the final evaluation). At the end of a run: the hyper-
parameters against the final metrics (the HPARAMS tab), the resolved config and sample outputs as text,
and precision-recall curves per class for classifiers (`pr/<class>`). metrics.jsonl keeps its own keys
(split "train"/"val", "lr"); runs/reading.py reads it back."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


TB_SPLITS = {"train": "train", "val": "eval"}  # metrics.jsonl split -> TensorBoard (HF) prefix
TB_KEYS = {"lr": "learning_rate"}              # metrics.jsonl key -> TensorBoard (HF) name


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
                self._tb.add_scalar(f"{TB_SPLITS.get(split, split)}/{TB_KEYS.get(key, key)}", value, step)

    def restart_at(self, step: int) -> None:
        """After a resume from `step`: TensorBoard drops what a killed process logged past it (the checkpoint
        restore already cut metrics.jsonl back), so the curves show each step once."""
        if self._tb is not None:
            self._tb.close()
            self._tb = self._writer(purge_step=step + 1)

    def _writer(self, purge_step: int | None = None) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """The HPARAMS tab: `params` (flat, scalar values) against `metrics` (tags also logged as scalars)."""
        if self._tb is None:
            return
        from torch.utils.tensorboard.summary import hparams

        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
        for summary in hparams(clean, metrics):
            self._tb._get_file_writer().add_summary(summary)
        for tag, value in metrics.items():
            self._tb.add_scalar(tag, value, step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        if self._tb is not None:
            self._tb.add_text(tag, markdown, step)

    def pr_curve(self, tag: str, truth: Any, probs: Any, step: int) -> None:
        """A precision-recall curve: 0/1 truth against the predicted probability of the positive."""
        if self._tb is not None:
            self._tb.add_pr_curve(tag, truth, probs, step)

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
