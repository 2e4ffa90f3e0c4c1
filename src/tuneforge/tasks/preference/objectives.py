"""The preference losses on sequence log-probabilities, each as its paper (and TRL, which the tests check
against to 1e-5) states it. `p*` are the policy's log-probabilities of a completion (summed over its tokens),
`r*` the reference model's, `n*` its token counts; every function returns one loss per pair or completion.

- DPO (Rafailov et al. 2023, Eq. 7): -log σ(β·[(p_c - r_c) - (p_r - r_r)]).
- IPO (Azar et al. 2023, Eq. 17): (h - 1/(2β))², h the difference of the per-token log-ratios (TRL's
  length normalisation, confirmed with the IPO authors).
- ORPO (Hong et al. 2024, Eqs. 4-7): NLL(chosen) - λ·log σ(log odds(c) - log odds(r)), odds from the mean
  per-token log-probability; no reference model.
- RPO (Pang et al. 2024, Eq. 3; `train.rpo_alpha` = α): DPO or IPO + α·NLL(chosen), the NLL the chosen answers'
  token mean (TRL's loss_type [sigmoid, sft] with loss_weights [1, α]): the supervised signal stays while the
  preference is learned, so the chosen answers' likelihood (and the facts they carry) is not traded away.
- KTO (Ethayarajh et al. 2024, Eq. 7): desirable 1 - σ(β(p - r - z)), undesirable 1 - σ(β(z - p + r)), z the
  batch's KL estimate from mismatched (prompt, completion) pairs, detached and clamped at 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Objective:
    """What a preference loss needs: pairs or labelled completions, a reference model, the chosen NLL."""

    name: str
    paired: bool        # learns from (chosen, rejected) pairs; else from completions labelled true/false
    reference: bool     # compares the policy with a reference model
    sft: bool           # adds the NLL of the chosen answers (on the tokens instruction tuning would train)
    use: str            # when to pick it (README)


OBJECTIVES = {
    "dpo": Objective("dpo", True, True, False, "the default: pairs of a better and a worse answer to one prompt"),
    "ipo": Objective("ipo", True, True, False, "pairs, when DPO over-optimizes (margins run away on near-"
                     "deterministic preferences): IPO's squared loss stops at a target margin"),
    "orpo": Objective("orpo", True, False, True, "pairs without a supervised run first: one stage of SFT and "
                      "preference at once, no reference model (least memory and compute)"),
    "kto": Objective("kto", False, True, False, "thumbs-up / thumbs-down completions that are not paired "
                     "(pairs are split into one of each)"),
}


def dpo_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, beta: float) -> torch.Tensor:
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


def ipo_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, nc: torch.Tensor,
             nr: torch.Tensor, beta: float) -> torch.Tensor:
    h = (pc - rc) / nc.clamp(min=1) - (pr - rr) / nr.clamp(min=1)
    return (h - 1 / (2 * beta)) ** 2


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation on either side of -log 2 (Mächler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_log_odds(mean_c: torch.Tensor, mean_r: torch.Tensor) -> torch.Tensor:
    """log odds(chosen) - log odds(rejected), odds(y) = P(y) / (1 - P(y)) with P the mean token probability."""
    mean_c, mean_r = mean_c.float(), mean_r.float()
    return (mean_c - mean_r) - (log1mexp(mean_c) - log1mexp(mean_r))


def orpo_loss(mean_c: torch.Tensor, mean_r: torch.Tensor, nll: torch.Tensor, lam: float) -> torch.Tensor:
    """The whole batch's ORPO loss (a scalar: the NLL is the chosen answers' token mean)."""
    return nll - lam * F.logsigmoid(orpo_log_odds(mean_c, mean_r)).mean()


def kto_kl(kl_policy: torch.Tensor, kl_reference: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z: the batch's mean log-ratio on mismatched pairs, detached, at least 0."""
    return (kl_policy - kl_reference).mean().detach().clamp(min=0)


def kto_loss(p: torch.Tensor, r: torch.Tensor, desirable: torch.Tensor, z: torch.Tensor, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> torch.Tensor:
    ratio = p - r
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratio - z)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (z - ratio)))
    return torch.where(desirable, good, bad)
