"""The causal-LM side of instruction tuning: packing rows, the supervised positions, and the loss.

Packing (data.packing: true): the examples of a micro-batch are packed first-fit into rows of at most
data.max_length tokens; position_ids restart at 0 for each example and no attention mask is passed, which
makes transformers (5.x, sdpa and eager) build a block-diagonal causal mask from the restarts — no example
attends to another. `packing_probe` checks once per model that this really holds; models that fail it train
unpacked (`unpack`: right-padded rows with an attention mask).

The loss runs the model body, then the lm_head only on supervised positions, in chunks
(`chunked_cross_entropy`): full-vocabulary logits for every position are never materialized.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100                 # label of a position that carries no loss (the Hugging Face convention)
CE_CHUNK = 1024               # supervised positions per lm_head + cross-entropy chunk


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices into `lengths` grouped into rows of at most `capacity` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for j in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        k = next((k for k, free in enumerate(room) if free >= lengths[j]), None)
        if k is None:
            rows.append([j])
            room.append(max(capacity, lengths[j]) - lengths[j])
        else:
            rows[k].append(j)
            room[k] -= lengths[j]
    return rows


def fill_rows(seqs: Sequence[tuple[Sequence[int], Sequence[int]]], rows: list[list[int]],
              pad: int) -> dict[str, torch.Tensor]:
    """(ids, labels) sequences laid out in rows (indices per row, e.g. from pack_rows), as (rows, width)
    tensors: input_ids, labels, position_ids (restarting at 0 per sequence; a row's trailing padding is a
    block of its own), real (1 = a real token) and example (each token's sequence index, -1 on padding)."""
    width = max(sum(len(seqs[j][0]) for j in row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.long)
    which = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for j in row:
            n = len(seqs[j][0])
            ids[r, at:at + n] = torch.tensor(seqs[j][0])
            labels[r, at:at + n] = torch.tensor(seqs[j][1])
            pos[r, at:at + n] = torch.arange(n)
            real[r, at:at + n] = 1
            which[r, at:at + n] = j
            at += n
        pos[r, at:] = torch.arange(width - at)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "real": real, "example": which}


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """Indices into labels.reshape(-1) of the positions t whose next token (t + 1, same row) has a label.

    The last column never qualifies: its next token is in the next row.
    """
    keep = labels != IGNORE
    keep[:, 0] = False  # no position predicts a row's first token
    return keep.reshape(-1).nonzero().squeeze(1) - 1


def unpack(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A packed batch re-laid as one right-padded row per example (for models that cannot pack)."""
    segs = []
    for r in range(batch["input_ids"].shape[0]):
        starts = (batch["position_ids"][r] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
        segs += [(r, a, b) for a, b in zip(starts, starts[1:]) if batch["real"][r, a]]
    width = max(b - a for _, a, b in segs)
    out = {k: torch.zeros((len(segs), width), dtype=torch.long, device=batch["input_ids"].device)
           for k in ("input_ids", "position_ids", "real")}
    out["labels"] = torch.full_like(out["input_ids"], IGNORE)
    keys = ("input_ids", "labels", "position_ids", "real") + (("example",) if "example" in batch else ())
    if "example" in batch:
        out["example"] = torch.full_like(out["input_ids"], -1)
    for s, (r, a, b) in enumerate(segs):
        for k in keys:
            out[k][s, :b - a] = batch[k][r, a:b]
    out["attention_mask"] = out["real"].clone()
    return out


def lm_logits(head: nn.Module, hidden: torch.Tensor, config: Any = None) -> torch.Tensor:
    """head(hidden) in fp32, scaled and soft-capped as the model's config says (Cohere, Gemma 2)."""
    logits = head(hidden).float()
    scale = getattr(config, "logit_scale", None)
    cap = getattr(config, "final_logit_softcapping", None)
    if scale:
        logits = logits * scale
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def chunked_cross_entropy(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                          config: Any = None, chunk: int = CE_CHUNK, reduction: str = "sum") -> torch.Tensor:
    """Cross-entropy of head(hidden) vs targets, CE_CHUNK positions at a time: summed, or (reduction "none")
    one value per position (the preference task sums them per sequence, evaluation per example).

    With several chunks under autograd each chunk is checkpointed: only one chunk's logits
    (chunk × vocab) exist at any time, at the price of recomputing the head in backward.
    """
    def ce(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(lm_logits(head, h, config), y, reduction=reduction)

    many = hidden.shape[0] > chunk and torch.is_grad_enabled()
    parts = []
    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, hidden.shape[0], chunk):
        h, y = hidden[s:s + chunk], targets[s:s + chunk]
        part = torch.utils.checkpoint.checkpoint(ce, h, y, use_reentrant=False) if many else ce(h, y)
        if reduction == "none":
            parts.append(part)
        else:
            total = total + part
    if reduction == "none":
        return torch.cat(parts) if parts else hidden.new_zeros((0,), dtype=torch.float32)
    return total


@torch.no_grad()
def packing_probe(body: nn.Module) -> bool:
    """Whether the body keeps packed examples apart: example b's hidden states alone vs. packed after a."""
    was_training = body.training
    body.eval()
    try:
        device = next(body.parameters()).device
        a, b = torch.arange(3, 8, device=device)[None], torch.arange(10, 16, device=device)[None]
        alone = body(input_ids=b, use_cache=False)[0]
        pos = torch.cat([torch.arange(a.shape[1]), torch.arange(b.shape[1])]).to(device)[None]
        packed = body(input_ids=torch.cat([a, b], 1), position_ids=pos, use_cache=False)[0][:, a.shape[1]:]
        return torch.allclose(alone.float(), packed.float(), atol=1e-3, rtol=1e-3)
    except (TypeError, ValueError, RuntimeError):  # a body without position_ids, or that rejects them
        return False
    finally:
        body.train(was_training)
