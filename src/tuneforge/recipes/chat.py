"""`tuneforge chat RUN`: talk to an instruction-tuned run, tokens streamed as they are generated.

The prompt is built by the run's own InstructionTask (model/tuneforge.json + the tokenizer's saved chat
template), piece by piece exactly as in training, so the model sees the format it was trained on.
Commands: /reset starts a new conversation, /exit (or Ctrl-D) quits. Works with piped stdin too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import TuneforgeError
from ..training.device import autocast_dtype, pick_device
from .inference import load_run


class ChatSession:
    """A conversation: the message history and one greedy, streamed reply per user turn."""

    def __init__(self, task: Any, model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None):
        self.task, self.model, self.device, self.dtype = task, model, device, dtype
        self.messages: list[dict[str, str]] = []
        self.reset()

    def reset(self) -> None:
        system = self.task.fmt.system
        self.messages = [{"role": "system", "content": system}] if system else []

    def prompt_ids(self) -> list[int]:
        return self.task.prompt_ids(self.messages)

    def ask(self, text: str, max_new_tokens: int, streamer: Any = None) -> str:
        """Append the user's turn, generate (streaming into `streamer`), append and return the reply."""
        self.messages.append({"role": "user", "content": text})
        (reply,) = self.task.generate(self.model, [self.prompt_ids()], 1, self.device, self.dtype,
                                      max_new_tokens=max_new_tokens, streamer=streamer)
        self.messages.append({"role": "assistant", "content": reply})
        return reply


def chat_command(run_dir: Path, max_new_tokens: int = 256) -> int:
    from transformers import TextStreamer

    cfg, task, model = load_run(run_dir)
    if not task.generates:
        raise TuneforgeError(f"{run_dir} is a {cfg.task} run; chat needs task: instruction "
                             "(use `tuneforge predict` for classifiers)")
    device = pick_device()
    session = ChatSession(task, model, device, autocast_dtype(cfg.train.precision, device))
    streamer = TextStreamer(task.tokenizer, skip_prompt=True, skip_special_tokens=True)
    print(f"chatting with {run_dir} — /reset starts over, /exit or Ctrl-D quits", flush=True)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            session.reset()
            continue
        if line:
            print("assistant> ", end="", flush=True)
            session.ask(line, max_new_tokens, streamer)
    print()
    return 0
