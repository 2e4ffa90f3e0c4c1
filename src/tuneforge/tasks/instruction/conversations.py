"""Conversations as token ids: the chat template rendered piece by piece, labels on the pieces that train, and
the window of data.max_length that keeps the final response. A mixin of InstructionTask (and so of the
preference task): it needs `tokenizer`, `fmt` (formatting.Formatting) and `notes`."""
from __future__ import annotations

from typing import Any

from ...data.records import Record
from ...errors import DataError
from .formatting import (Formatting, Window, chat_messages, conversation_pieces, detect_format, pair_messages,
                         window_begin)
from .lm import IGNORE


class Conversations:
    tokenizer: Any
    fmt: Formatting
    notes: list[str]

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def conversation_ids(self, messages: list[dict[str, str]],
                         add_generation_prompt: bool = False) -> tuple[list[int], list[int], list[list[int]]]:
        """Token ids of a conversation with labels, and the ids of each piece.

        Pieces are tokenized separately, so the ids before a response are exactly what inference sees.
        """
        pieces = conversation_pieces(messages, self.render, add_generation_prompt)
        parts = self._tokenize([p.text for p in pieces])
        ids: list[int] = []
        labels: list[int] = []
        for piece, toks in zip(pieces, parts):
            ids += toks
            labels += toks if (piece.trains or self.fmt.train_on_inputs) else [IGNORE] * len(toks)
        return ids, labels, parts

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The generation input for a conversation that ends with a user turn (predict, chat, serve), the
        run's system prompt first when the conversation brings none (as in training)."""
        if self.fmt.system and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.fmt.system}] + list(messages)
        ids, _, _ = self.conversation_ids(messages, add_generation_prompt=True)
        return ids[-self.fmt.max_length:]

    def messages_of(self, r: Record, with_response: bool = True) -> tuple[str, list[dict[str, str]]]:
        f = self.fmt
        kind = detect_format(r, f.format, f.prompt, f.response, f.messages, f.text)
        if kind == "chat":
            return kind, chat_messages(r, f.messages, f.system, f.chat_template)
        if kind == "pairs":
            return kind, pair_messages(r, f.prompt, f.input, f.response if with_response else None, f.system)
        return kind, []

    def note_cuts(self, split: str, cut: dict[str, list[str]]) -> None:
        """One run-log note per kind of cut (prompt, response): how many examples, and the first places."""
        for what, where in cut.items():
            self.notes.append(f"{split}: {len(where)} example(s) longer than data.max_length={self.fmt.max_length}: "
                              f"{what} cut ({', '.join(where[:3])}{', …' if len(where) > 3 else ''})")

    def fit_conversation(self, r: Record, msgs: list[dict[str, str]]) -> Window:
        """A conversation up to its last assistant turn as ids and labels cut to data.max_length (the final
        response kept), with where that response starts in the window."""
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError(r.file, r.line, "no assistant message to learn from", "add the expected answer")
        msgs = msgs[:last + 1]  # trailing user turns carry no loss
        ids, labels, parts = self.conversation_ids(msgs)
        start = len(ids) - len(parts[-1])  # parts: [..., final prompt, final response]
        if not parts[-1]:
            raise DataError(r.file, r.line, "the response is empty", "fill in the answer")
        # The prompt may shrink from the left down to its last turn (≤ half the window), never below
        # the assistant header that generation starts from.
        floor = max(self._header_length(msgs[:last]), min(len(parts[-2]), self.fmt.max_length // 2))
        prompt = ids[:start][-self.fmt.max_length:]
        begin, note = window_begin(len(ids), start, floor, self.fmt.max_length, r.where)
        ids, labels = ids[begin:begin + self.fmt.max_length], labels[begin:begin + self.fmt.max_length]
        labels = [IGNORE] + labels[1:]  # the first token has nothing before it to predict it from
        return Window(ids, labels, start - begin, prompt, note, msgs)

    def _header_length(self, prompt_msgs: list[dict[str, str]]) -> int:
        """Tokens the template adds to open an assistant turn (generation starts right after them)."""
        bare, head = self.render(prompt_msgs, False), self.render(prompt_msgs, True)
        return len(self._tokenize([head[len(bare):]])[0]) if head.startswith(bare) else 1
