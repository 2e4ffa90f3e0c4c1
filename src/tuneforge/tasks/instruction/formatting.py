"""Instruction data formatting: records → messages → rendered pieces → token ids, identical at inference.

Data formats (data.format, `auto` decides per record):
- pairs: `instruction` (+ optional `input`) → `output`   (data.prompt / data.input / data.response): Alpaca,
         as JSONL or as one JSON array (data/records.py reads both)
- chat:  OpenAI-style `messages` [{role: system|user|assistant|tool, content}], multi-turn, assistant turns
         with `tool_calls` and the `tool` turns answering them   (data.messages); or ShareGPT `conversations`
         [{from: system|human|gpt|tool, value}] (LLaMA-Factory's function_call/observation too)
- text:  plain `text` for continued pre-training; every token trains   (data.text)

Formatting uses the tokenizer's own chat template. A tokenizer without one gets FALLBACK_TEMPLATE (the
Zephyr layout `<|user|>\\n…</s>\\n<|assistant|>\\n…</s>\\n`, with the tokenizer's eos). Whichever template
trains is set on the tokenizer, so it is saved with it in model/ and inference renders exactly the same.

A conversation is rendered turn by turn: the text before each assistant turn (prompt) and the assistant
turn itself (content + end-of-turn) are tokenized as separate pieces, so the ids a prompt has at inference
are exactly the ids that preceded the response in training (`conversation_ids`). Loss falls on every
assistant turn only, unless data.train_on_inputs.
"""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from ...data.records import Record, file_kind
from ...errors import DataError, TuneforgeError

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT = "conversations"  # ShareGPT's column, read as chat whatever data.messages names
# ShareGPT speakers (and LLaMA-Factory's tool turns) → OpenAI roles
SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
            "bot": "assistant", "model": "assistant", "system": "system", "tool": "tool", "observation": "tool",
            "function": "tool", "function_call": "assistant"}
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass
class Piece:
    text: str
    trains: bool          # an assistant turn: its tokens carry the loss


# ---------------------------------------------------------------------------- records → messages

def detect_format(r: Record, fmt: str, prompt: str, response: str, messages: str, text: str) -> str:
    """The layout of one record: the configured one, or (auto) the first whose columns it has."""
    if fmt != "auto":
        return fmt
    if messages in r.fields or SHAREGPT in r.fields:
        return "chat"
    if prompt in r.fields:
        return "pairs"
    if text in r.fields:
        return "text"
    have = ", ".join(sorted(r.fields)) or "none"
    raise DataError(r.file, r.line, f"no '{messages}', '{prompt}' or '{text}' column (columns: {have})",
                    "set data.prompt/data.response, data.messages or data.text to your column names")


def text_field(r: Record, column: str, what: str, required: bool = True) -> str | None:
    value = r.fields.get(column)
    if value is None or value == "":
        if required:
            raise DataError(r.file, r.line, f"missing or empty {what} column '{column}'",
                            f"fill it, or point data.{what} at the right column")
        return None
    if not isinstance(value, str):
        raise DataError(r.file, r.line, f"{what} column '{column}' is {type(value).__name__}, expected text")
    return value


def chat_layout(r: Record, column: str) -> tuple[str, str]:
    """(the column holding the conversation, "OpenAI messages" or "ShareGPT") of a chat record."""
    col = column if column in r.fields or SHAREGPT not in r.fields else SHAREGPT
    raw = r.fields.get(col)
    first = raw[0] if isinstance(raw, list) and raw else None
    return col, "ShareGPT" if isinstance(first, dict) and "from" in first else "OpenAI messages"


def _content(r: Record, i: int, m: Any, tools_in_template: bool) -> dict[str, Any]:
    """One message as OpenAI's {role, content[, tool_calls]}, from OpenAI or ShareGPT (from/value) form;
    list-of-parts content is joined. An assistant turn that only calls tools keeps `tool_calls` for a
    template that renders them, else the calls as JSON text (what the model must learn to write)."""
    if isinstance(m, dict) and "from" in m and "role" not in m:
        speaker = m["from"]
        if speaker not in SPEAKERS:
            raise DataError(r.file, r.line, f"message {i} is from {speaker!r}",
                            f"ShareGPT speakers are {', '.join(sorted(SPEAKERS))}")
        m = {"role": SPEAKERS[speaker], "content": m.get("value")}
    if not isinstance(m, dict) or "role" not in m or ("content" not in m and "tool_calls" not in m):
        raise DataError(r.file, r.line, f"message {i} is not an object with 'role' and 'content'",
                        'write {"role": "user", "content": "..."} (or ShareGPT {"from": "human", "value": "..."})')
    role, content, calls = m["role"], m.get("content"), m.get("tool_calls")
    if role not in ROLES:
        raise DataError(r.file, r.line, f"message {i} has role {role!r}", f"use one of {', '.join(ROLES)}")
    if isinstance(content, list):  # [{"type": "text", "text": "..."}]
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if isinstance(content, dict):  # a tool's structured result
        content = json.dumps(content, ensure_ascii=False)
    if content is None and calls:
        content = "" if tools_in_template else json.dumps(calls, ensure_ascii=False)
    if not isinstance(content, str):
        raise DataError(r.file, r.line, f"message {i} content is {type(content).__name__}, expected text")
    out: dict[str, Any] = {"role": role, "content": content}
    if calls and tools_in_template:
        out["tool_calls"] = calls
    if role == "tool" and m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    return out


def chat_messages(r: Record, column: str, system: str | None, template: str = "") -> list[dict[str, Any]]:
    column, _ = chat_layout(r, column)
    raw = r.fields.get(column)
    if isinstance(raw, str):  # CSV cells hold the list as JSON text
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise DataError(r.file, r.line, f"'{column}' is text that is not a JSON list of messages") from None
    if not isinstance(raw, list) or not raw:
        raise DataError(r.file, r.line, f"'{column}' must be a non-empty list of messages")
    msgs = [_content(r, i, m, "tool_calls" in template) for i, m in enumerate(raw)]
    record_system = r.fields.get("system") if column == SHAREGPT else None  # LLaMA-Factory's sharegpt column
    system = system or (record_system if isinstance(record_system, str) and record_system else None)
    if system and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system})
    first = next((m["role"] for m in msgs if m["role"] != "system"), None)
    if first == "assistant":
        raise DataError(r.file, r.line, "the conversation starts with an assistant message",
                        "start with a user message")
    return msgs


def pair_messages(r: Record, prompt: str, inp: str, response: str | None,
                  system: str | None) -> list[dict[str, str]]:
    """instruction (+ input, after a blank line) as the user turn; output as the assistant turn."""
    user = text_field(r, prompt, "prompt")
    extra = text_field(r, inp, "input", required=False)
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": user + (f"\n\n{extra}" if extra else "")})
    if response is not None:
        msgs.append({"role": "assistant", "content": text_field(r, response, "response")})
    return msgs


# ---------------------------------------------------------------------------- messages → pieces → ids

def conversation_pieces(messages: list[dict[str, str]], render: Callable[..., str],
                        add_generation_prompt: bool = False) -> list[Piece]:
    """The rendered conversation cut at assistant-turn boundaries: prompt pieces and assistant pieces.

    Relies on the template being prefix-stable (rendering the first k messages is a prefix of rendering
    k+1), which holds for the common templates; one that is not gets a clear error instead of bad masks.
    """
    pieces: list[Piece] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head, full = render(messages[:i], True), render(messages[:i + 1], False)
        _check_prefix(done, head)
        _check_prefix(head, full)
        pieces += [Piece(head[len(done):], False), Piece(full[len(head):], True)]
        done = full
    tail = render(messages, add_generation_prompt) if messages[-1]["role"] != "assistant" or \
        add_generation_prompt else done
    _check_prefix(done, tail)
    if tail[len(done):]:
        pieces.append(Piece(tail[len(done):], False))
    return [p for p in pieces if p.text]


def _check_prefix(prefix: str, text: str) -> None:
    if not text.startswith(prefix):
        raise TuneforgeError("the chat template renders earlier turns differently once later turns are added, "
                             "so assistant turns cannot be located for the loss mask; use a model whose "
                             f"template is prefix-stable (first mismatch near {prefix[-40:]!r})")


def fit_window(ids: list[int], labels: list[int], start: int, floor: int, max_length: int,
               where: str) -> tuple[list[int], list[int], str]:
    """Cut a sequence to max_length without silently losing its response (the window `window_begin` picks)."""
    begin, note = window_begin(len(ids), start, floor, max_length, where)
    if not note:
        return ids, labels, ""
    return ids[begin:begin + max_length], labels[begin:begin + max_length], note


def window_begin(n: int, start: int, floor: int, max_length: int, where: str) -> tuple[int, str]:
    """Where the max_length window of an n-token sequence begins, and a note when it cuts anything.

    `start` is where the final response begins and `floor` how many prompt tokens right before it must stay
    (at least the assistant header). First the prompt is cut from the left; if the response alone is too
    long its beginning is kept (and a note returned); if nothing of it fits, DataError.
    """
    if n <= max_length:
        return 0, ""
    if n - start + floor <= max_length:
        return n - max_length, "prompt cut from the left"
    room = max_length - floor
    if room <= 0:
        raise DataError(*_split_where(where), f"nothing of the response fits in data.max_length={max_length} "
                        f"after the {floor} prompt tokens that must stay", "raise data.max_length")
    return start - floor, f"response cut to its first {room} tokens"


@dataclass
class Window:
    """A conversation cut to data.max_length: ids, labels, where its final response starts (in the window),
    the generation prompt before that response, what the cut did (a note) and the messages it holds."""

    ids: list[int]
    labels: list[int]
    start: int
    prompt: list[int]
    note: str
    messages: list[dict[str, str]]


def _split_where(where: str) -> tuple[str, int | None]:
    file, _, line = where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (where, None)


@dataclass
class Formatting:
    """What must be identical at training and inference: template, system prompt, columns, lengths."""

    chat_template: str
    template_source: str            # "tokenizer" or "fallback"
    format: str = "auto"
    prompt: str = "instruction"
    input: str = "input"
    response: str = "output"
    messages: str = "messages"
    text: str = "text"
    system: str | None = None
    train_on_inputs: bool = False
    max_length: int = 256



def stop_token_ids(tokenizer: Any, template: str) -> list[int]:
    """eos plus any end-of-turn special token the template writes (e.g. <|im_end|>, <|eot_id|>)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    specials = set(getattr(tokenizer, "all_special_tokens", [])) | set(tokenizer.get_added_vocab())
    for tok in sorted(specials):
        low = tok.lower()
        if tok in template and ("end" in low or "eot" in low):
            tid = tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid not in ids:
                ids.append(tid)
    if not ids:
        raise TuneforgeError("the tokenizer has no eos token, so generation could never stop; set one")
    return ids


LAYOUTS = {"pairs": "prompt/response pairs (Alpaca)", "text": "plain text"}


def layout_notes(records: list[Record], fmt: Formatting, split: str) -> list[str]:
    """One run-log line per data file: its container (JSONL, JSON array, ...) and the layout of its records
    (OpenAI messages, ShareGPT, Alpaca pairs, plain text), as detected record by record."""
    per_file: dict[str, dict[str, int]] = {}
    for r in records:
        kind = detect_format(r, fmt.format, fmt.prompt, fmt.response, fmt.messages, fmt.text)
        name = chat_layout(r, fmt.messages)[1] if kind == "chat" else LAYOUTS[kind]
        counts = per_file.setdefault(r.file, {})
        counts[name] = counts.get(name, 0) + 1
    return [f"data {split}: {file} ({file_kind(file) if Path(file).exists() else 'records'}): "
            + ", ".join(f"{n:,} {name}" for name, n in counts.items()) for file, counts in per_file.items()]


def template_with_system(template: str, system: str | None) -> str:
    """The chat template with the run's system prompt built in: a conversation that opens without a system
    message gets `system` first, exactly as training and `tuneforge predict` add it, so plain
    `apply_chat_template` renders what the model was trained on (and not, say, SmolLM's own default)."""
    if not system:
        return template
    literal = json.dumps(system)  # a JSON string is a valid Jinja string literal
    return ("{% if not messages or messages[0]['role'] != 'system' %}{% set messages = [{'role': 'system', "
            f"'content': {literal}}}] + messages %}}{{% endif %}}" + template)
