"""`tuneforge chat RUN`: talk to an instruction-tuned run, tokens streamed as they are generated.

The prompt is built by the run's own InstructionTask (model/tuneforge.json + the tokenizer's saved chat
template), piece by piece exactly as in training, so the model sees the format it was trained on.
Commands: /reset starts a new conversation, /exit (or Ctrl-D) quits. Works with piped stdin too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..training.device import autocast, autocast_dtype, pick_device
from ..errors import TuneforgeError


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

    @torch.no_grad()
    def ask(self, text: str, max_new_tokens: int, streamer: Any = None) -> str:
        """Append the user's turn, generate (streaming into `streamer`), append and return the reply."""
        from transformers import GenerationConfig

        self.messages.append({"role": "user", "content": text})
        ids = torch.tensor([self.prompt_ids()], device=self.device)
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=self.task.stop_ids,
                                  pad_token_id=self.task.stop_ids[0])
        with autocast(self.device, self.dtype):
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                      streamer=streamer)
        reply = self.task.decode_reply(out[0, ids.shape[1]:].tolist())
        self.messages.append({"role": "assistant", "content": reply})
        return reply


def chat_command(run_dir: Path, max_new_tokens: int = 256) -> int:
    from transformers import TextStreamer

    from ..recipes.train import load_run

    cfg, task, model = load_run(run_dir)
    if getattr(task, "name", "") != "instruction":
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
