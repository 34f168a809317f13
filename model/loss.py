"""The multi-task objective of section III-D, eq. (8).

    L = sum_t  L_t / (2 sigma_t^2)  +  ln(1 + sigma_t^2),   t in {mul, lan, sen}

Each task loss ``L_t`` is the L1 loss of one regression head against the (multimodal) label.
For numerical stability the learnable parameter is ``s_t = ln(sigma_t^2)``, so that
``1 / (2 sigma_t^2) = exp(-s_t) / 2`` and ``ln(1 + sigma_t^2) = softplus(s_t)``: no division by
a parameter that can reach zero, and no overflow for large ``s_t``. ``s_t`` starts at 0
(sigma = 1). With a single task the objective is the plain L1 loss.

An optional auxiliary term (not in the paper; ``ModelConfig.ordinal_weight``) adds
``w * BCE(ordinal logits, [y > t_k])`` over the six class boundaries ``t_k`` of
:data:`model.senbert.ORDINAL_THRESHOLDS`, with a fixed weight outside eq. (8)'s weighting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ModelConfig
from model.senbert import ORDINAL_THRESHOLDS

TASKS = ("multimodal", "language", "sense")


def tasks_for(cfg: ModelConfig) -> list[str]:
    """The tasks whose losses a configuration optimises (Table II's auxiliary-task ablations)."""
    return list(cfg.trained_tasks)


class UncertaintyWeightedLoss(nn.Module):
    """Eq. (8) with learnable log-variances, one per task."""

    def __init__(self, tasks: list[str], ordinal_weight: float = 0.0) -> None:
        super().__init__()
        self.ordinal_weight = float(ordinal_weight)
        self.register_buffer("thresholds", torch.tensor(ORDINAL_THRESHOLDS), persistent=False)
        unknown = set(tasks) - set(TASKS)
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks}")
        self.tasks = list(tasks)
        self.log_var = nn.Parameter(torch.zeros(len(self.tasks)))

    def sigmas(self) -> dict[str, float]:
        return {t: float(torch.exp(0.5 * s)) for t, s in zip(self.tasks, self.log_var.detach())}

    def forward(self, outputs: dict[str, Tensor], labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the total loss and the per-task L1 losses (detached); with the ordinal term, also
        its binary cross-entropy under ``ordinal``."""
        per_task = {t: F.l1_loss(outputs[t], labels) for t in self.tasks}
        if len(self.tasks) == 1:
            total = per_task[self.tasks[0]]
        else:
            total = labels.new_zeros(())
            for t, s in zip(self.tasks, self.log_var):
                total = total + 0.5 * torch.exp(-s) * per_task[t] + F.softplus(s)
        parts = {t: v.detach() for t, v in per_task.items()}
        if self.ordinal_weight > 0:
            if "ordinal" not in outputs:
                raise ValueError("ordinal_weight > 0 but the model returned no ordinal logits (not in training mode?)")
            above = (labels.unsqueeze(-1) > self.thresholds).to(outputs["ordinal"].dtype)
            bce = F.binary_cross_entropy_with_logits(outputs["ordinal"], above)
            total = total + self.ordinal_weight * bce
            parts["ordinal"] = bce.detach()
        return total, parts
