"""Config checks of the privacy section that involve other keys: what differentially private training
(privacy.dp, training/dp.py) and canaries (privacy.canaries) cannot run with, refused before any work."""
from __future__ import annotations

from typing import Any


def privacy_problems(cfg: Any) -> list[str]:
    """What differentially private training (privacy.dp) and canaries cannot run with, refused before any work."""
    from .methods import method_class
    from .tasks import task_class

    dp, task, method = cfg.privacy.dp, task_class(cfg.task), method_class(cfg.method.name)
    problems = []
    if cfg.privacy.canaries and not task.plants_canaries:
        problems.append(f"`privacy.canaries` needs an instruction task (a {cfg.task} model completes no secrets); "
                        "set it to 0")
    if dp.epsilon is None:
        return problems
    if dp.epsilon <= 0 or dp.max_grad_norm <= 0 or (dp.delta != "auto" and not 0 < dp.delta < 1):
        key = "epsilon" if dp.epsilon <= 0 else "max_grad_norm" if dp.max_grad_norm <= 0 else "delta"
        return problems + [f"`privacy.dp.{key}` = {getattr(dp, key)} must be above 0" + (" and below 1" if
                                                                                         key == "delta" else "")]
    refusals = [(not task.supports_dp, "task", f"= {cfg.task}: its loss is not a mean of per-example losses; "
                 "use task: classification or instruction"),
                (method.dp_problem is not None, "method.name", f"= {cfg.method.name}: {method.dp_problem}"),
                (cfg.data.packing is True, "data.packing", "= true mixes examples in one row, so an example's "
                 "gradient is no longer its own; set data.packing: false"),
                (bool(cfg.forgetting.replay), "forgetting.replay", "mixes reference rows into the private batches "
                 "outside the accountant's sampling; set it to 0"),
                (bool(cfg.forgetting.ewc or cfg.forgetting.l2_to_base), "forgetting.ewc",
                 "/ `forgetting.l2_to_base` add a penalty whose gradient DP-SGD does not clip; set them to 0"),
                (cfg.train.compile in ("blocks", "graphs"), "train.compile",
                 "compiles away the layer hooks that give per-example gradients; set train.compile: auto"),
                (cfg.train.nan_policy == "skip", "train.nan_policy", "= skip would retry batches the accountant "
                 "already counted; set train.nan_policy: stop")]
    return problems + [f"privacy.dp: `{key}` {why}" for bad, key, why in refusals if bad]
