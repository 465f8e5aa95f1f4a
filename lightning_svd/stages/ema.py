"""Exponential moving average of a module's parameters, kept beside the module and swapped in to sample."""

import contextlib

import torch
from torch import nn


class ParameterEMA:
    """shadow <- d shadow + (1 - d) param after every optimizer step, with d = min(decay, (1 + n) / (10 + n)).

    The warm-up term (n = updates so far) keeps the average from being dominated by the random or
    freshly loaded start when decay is 0.9999; the shadow is float32 whatever precision trains.
    """

    def __init__(self, module: nn.Module, decay: float, prefixes: tuple[str, ...] = ("",)):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.module = module
        self.prefixes = tuple(prefixes)
        self.decay = decay
        self.updates = 0
        self.reset()

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """The averaged parameters, by their name in the module (those under one of `prefixes`)."""
        return {n: p for n, p in self.module.named_parameters() if n.startswith(self.prefixes)}

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, param in self.named_parameters().items():
            shadow = self.shadow[name]
            if shadow.device != param.device:
                shadow = self.shadow[name] = shadow.to(param.device)
            shadow.lerp_(param.detach().float(), 1.0 - decay)
        self.updates += 1

    def reset(self) -> None:
        """Restart the average from the current weights (after loading an earlier stage)."""
        self.shadow = {name: p.detach().float().clone() for name, p in self.named_parameters().items()}
        self.updates = 0

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self):
        """Temporarily load the averaged weights into the module; the training weights come back afterwards."""
        params = self.named_parameters()
        backup = {name: p.detach().clone() for name, p in params.items()}
        for name, param in params.items():
            param.copy_(self.shadow[name].to(param.device, param.dtype))
        try:
            yield self.module
        finally:
            for name, param in params.items():
                param.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        names = set(self.named_parameters())
        if set(state["shadow"]) != names:
            missing = sorted(names - set(state["shadow"]))[:3]
            raise ValueError(f"EMA state does not fit the model (missing e.g. {missing}); was it saved by this stage?")
        self.updates = int(state["updates"])
        self.shadow = {k: v.float().clone() for k, v in state["shadow"].items()}
