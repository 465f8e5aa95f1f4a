"""Name -> implementation tables, so a config picks each diffusion part by name without isinstance dispatch."""

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from lightning_svd.errors import UserError


class Registry:
    """Maps config names to one kind of part (a class or a sampler function) and builds it from a spec.

    A spec is a mapping with a `name` key and the part's keyword parameters next to it, e.g.
    `{"name": "log_normal", "p_mean": 0.7, "p_std": 1.6}` (a plain dict or an OmegaConf node).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(entry: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, spec: Mapping[str, Any] | str) -> Any:
        """Instantiate the named class with the spec's parameters."""
        name, params = self._split(spec)
        entry = self.get(name)
        signature = inspect.signature(entry)
        self._check(name, params, accepted=list(signature.parameters))
        missing = [
            p.name
            for p in signature.parameters.values()
            if p.default is inspect.Parameter.empty and p.name not in params
        ]
        if missing:
            raise UserError(f"{self.kind} {name!r} needs parameter(s) {', '.join(missing)}")
        try:
            return entry(**params)
        except ValueError as error:
            raise UserError(f"{self.kind} {name!r}: {error}") from error

    def bind(self, spec: Mapping[str, Any] | str) -> Callable[..., Any]:
        """Return the named function with the spec's keyword-only parameters bound (for sampler functions)."""
        name, params = self._split(spec)
        entry = self.get(name)
        accepted = [
            p.name for p in inspect.signature(entry).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        self._check(name, params, accepted)
        return functools.partial(entry, **params)

    def _split(self, spec: Mapping[str, Any] | str) -> tuple[str, dict[str, Any]]:
        params = {"name": spec} if isinstance(spec, str) else dict(spec)
        if "name" not in params:
            raise UserError(f"{self.kind} config needs a 'name' key; valid choices: {', '.join(self.names())}")
        return params.pop("name"), params

    def _check(self, name: str, params: dict[str, Any], accepted: list[str]) -> None:
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise UserError(
                f"{self.kind} {name!r} got unknown parameter(s) {', '.join(unknown)}; "
                f"valid parameters: {', '.join(accepted) or 'none'}"
            )
