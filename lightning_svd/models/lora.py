"""Low-rank adapters (Hu et al. 2021): W x + (alpha / r) B A x with A (r x in), B (out x r), B zero at start.

SVD trained rank-16 camera-motion LoRAs "within the temporal attention blocks"; which projections is not
stated, so `TEMPORAL_ATTENTION` targets q, k, v and out of both attentions of every temporal transformer block.
Adapters save and load on their own (`lora_state_dict` / `load_lora_state_dict`) and merge into the base
weights for inference (`merge_lora`).
"""

import math
import re
from collections.abc import Mapping

import torch
from torch import nn

TEMPORAL_ATTENTION = r"(^|\.)time_stack\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$"


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update; `merge()` folds the update into the base weight."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        self.lora_down = nn.Linear(base.in_features, rank, bias=False)
        self.lora_up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.lora_down.to(base.weight.device, base.weight.dtype)
        self.lora_up.to(base.weight.device, base.weight.dtype)
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_up(self.lora_down(x))

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain Linear whose weight includes the low-rank update."""
        delta = self.scale * (self.lora_up.weight.float() @ self.lora_down.weight.float())
        self.base.weight.add_(delta.to(self.base.weight.dtype))
        return self.base


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def add_lora(
    model: nn.Module, rank: int = 16, alpha: float | None = None, target: str = TEMPORAL_ATTENTION
) -> list[str]:
    """Wrap every Linear whose module path matches `target` (a regex) with a LoRA; returns the wrapped paths."""
    pattern = re.compile(target)
    paths = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.search(name)]
    if not paths:
        raise ValueError(f"no Linear layer matches the LoRA target {target!r}; is the model temporal?")
    for path in paths:
        _set_submodule(model, path, LoRALinear(model.get_submodule(path), rank, alpha))
    return paths


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_down.weight, m.lora_up.weight)]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors, keyed by their path in `model` (what a LoRA file holds)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_down." in k or ".lora_up." in k}


def load_lora_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load adapter tensors into a model that already has matching LoRA layers; every adapter must be given."""
    expected = set(lora_state_dict(model))
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"LoRA weights do not fit this model: missing {missing[:3]} ({len(missing)}), "
            f"unexpected {unexpected[:3]} ({len(unexpected)}); add_lora with the same rank and target first"
        )
    model.load_state_dict(dict(state_dict), strict=False)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base Linear (inference without the extra matmuls); returns how many."""
    paths = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for path in paths:
        _set_submodule(model, path, model.get_submodule(path).merged())
    return len(paths)
