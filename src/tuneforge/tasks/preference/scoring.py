"""From sequence log-probabilities to the objective's loss and to the preference metrics of an evaluation.

Rewards are the implicit ones each objective optimizes: β·(log π − log π_ref) for DPO, IPO and KTO (summed
over the completion), λ·(mean token log π) for ORPO (TRL's logging). Over pairs: `reward_accuracy` is the
share of pairs whose chosen completion has the higher reward (a tie counts half: a model that is its own
reference scores 0.5), `reward_margin` the mean reward difference, `chosen_logps`/`rejected_logps` the mean
summed log-probabilities, `logp_accuracy` the share of pairs where the model itself finds the chosen
completion likelier (no reference: comparable between the base, a supervised run and a preference run).
Over unpaired completions (KTO data): the share whose reward has the sign of its label (a zero reward counting
half, as a tie), and the mean reward of desirable minus that of undesirable ones. `kl`: the mean per-token KL(policy ‖ reference) at the completion
tokens (exact over the vocabulary).
"""
from __future__ import annotations

from typing import Any

import torch

from .objectives import dpo_loss, ipo_loss, kto_kl, kto_loss, orpo_loss


def objective_loss(s: dict[str, Any], batch: dict[str, Any], st: Any) -> torch.Tensor:
    """The batch's mean loss under the settings' objective (`s`: PreferenceTask.scores)."""
    name, p = st.objective.name, batch["pairs"]
    pol, lengths = s["policy"]["seq"], batch["main"]["lengths"]
    if name == "kto":
        z = kto_kl(s["policy_kl"]["seq"], s["ref_kl"]["seq"])
        return kto_loss(pol, s["ref"]["seq"], batch["desirable"], z, st.beta, st.desirable_weight,
                        st.undesirable_weight).mean()
    if name == "orpo":
        return orpo_loss(pol[:p] / lengths[:p], pol[p:2 * p] / lengths[p:2 * p], chosen_nll(s, batch), st.orpo_lambda)
    ref = s["ref"]["seq"]
    if name == "ipo":
        loss = ipo_loss(pol[:p], pol[p:2 * p], ref[:p], ref[p:2 * p], lengths[:p], lengths[p:2 * p], st.beta).mean()
    else:
        loss = dpo_loss(pol[:p], pol[p:2 * p], ref[:p], ref[p:2 * p], st.beta).mean()
    return loss + st.rpo_alpha * chosen_nll(s, batch) if st.rpo_alpha else loss


def chosen_nll(s: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
    """The chosen answers' mean token NLL over their supervised positions (ORPO's SFT term, RPO's α term; TRL's
    `sft` loss): the pairs' chosen rows come first in the batch."""
    chosen = (batch["main"]["row_of"] < batch["pairs"]).float()
    return -(s["policy"]["token"] * chosen).sum() / chosen.sum().clamp(min=1)


def rewards(st: Any, policy: torch.Tensor, ref: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor | None:
    """Each row's implicit reward (None: the objective's reward needs a reference that is not there)."""
    if st.objective.name == "orpo":
        return st.orpo_lambda * policy / lengths.clamp(min=1)
    return None if ref is None else st.beta * (policy - ref)


def share(diff: torch.Tensor) -> float:
    """The share of positive differences, a tie counting half (in float64: the per-pair rows' tally of the same
    wins gives the same number to the last bit)."""
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


class Tally:
    """Collects an evaluation's batches; `metrics` gives the preference metrics over all of them, and with
    `order` given to `add` (each main row's example index) `kept` holds every row's numbers for rows.py."""

    def __init__(self, st: Any):
        self.st = st
        self.loss = 0.0
        self.n = 0
        self.kl = [0.0, 0]
        self.pairs: list[torch.Tensor] = []    # rows of (policy chosen, policy rejected, reward c, reward r)
        self.single: list[torch.Tensor] = []   # rows of (policy, reward, label)
        # per batch: its pair count, each main row's example index, and per row (policy, reward, completion
        # tokens, KL sum, KL positions)
        self.kept: list[tuple[int, list[int], torch.Tensor]] = []

    def add(self, s: dict[str, Any], batch: dict[str, Any], loss: float, n: int,
            kl: tuple[torch.Tensor, torch.Tensor] | None, order: list[int] | None = None) -> None:
        p = batch["pairs"]
        pol = s["policy"]["seq"].float().cpu()
        ref = s["ref"]["seq"].float().cpu() if "ref" in s else None
        r = rewards(self.st, pol, ref, batch["main"]["lengths"].cpu())
        r = torch.full_like(pol, float("nan")) if r is None else r
        self.loss, self.n = self.loss + loss * n, self.n + n
        if kl is not None:
            self.kl = [self.kl[0] + float(kl[0].sum()), self.kl[1] + int(kl[1].sum())]
        if p:
            self.pairs.append(torch.stack([pol[:p], pol[p:2 * p], r[:p], r[p:2 * p]], 1))
        if len(pol) > 2 * p:
            self.single.append(torch.stack([pol[2 * p:], r[2 * p:], batch["desirable"][2 * p:].float().cpu()], 1))
        if order is not None:
            sub = batch["main"]
            tokens = torch.zeros(len(pol)).index_add(0, sub["row_of"].cpu(), sub["in_completion"].float().cpu())
            none = torch.full_like(pol, float("nan"))
            kls = (kl[0].float().cpu(), kl[1].float().cpu()) if kl is not None else (none, none)
            self.kept.append((p, order, torch.stack([pol, r, tokens, *kls], 1)))

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loss": self.loss / max(self.n, 1), "n": self.n}
        if self.pairs:
            pc, pr, rc, rr = torch.cat(self.pairs).T
            out.update(logp_accuracy=share(pc - pr), chosen_logps=float(pc.mean()), rejected_logps=float(pr.mean()))
            if not torch.isnan(rc).any():
                out.update(reward_accuracy=share(rc - rr), reward_margin=float((rc - rr).mean()))
        elif self.single:
            pol, r, label = torch.cat(self.single).T
            good, bad = label > 0, label == 0
            out.update(chosen_logps=float(pol[good].mean()) if good.any() else None,
                       rejected_logps=float(pol[bad].mean()) if bad.any() else None)
            if not torch.isnan(r).any():
                out["reward_accuracy"] = share(torch.where(good, r, -r))  # the reward's sign is the label's
                if good.any() and bad.any():
                    out["reward_margin"] = float(r[good].mean() - r[bad].mean())
        if self.kl[1]:
            out["kl"] = self.kl[0] / self.kl[1]
        return {k: v for k, v in out.items() if v is not None}
