"""The study's knobs, read from the `study:` config section and checked once, with a message per bad key."""

from collections.abc import Mapping
from dataclasses import dataclass

from lightning_svd.errors import UserError


def _number(value, name: str, low: float, high: float, integer: bool = False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise UserError(f"study.{name} must be {what} between {low} and {high}, got {value!r}")
    return value


@dataclass(frozen=True)
class StudySettings:
    host: str = "127.0.0.1"
    port: int = 8765
    votes_per_pair: int = 3
    attention_check_rate: float = 0.1
    attention_min_pass_rate: float = 0.75
    open_enrollment: bool = False
    lease_s: float = 600.0
    max_pending_per_address: int = 4
    rater_requests_per_minute: int = 60
    address_requests_per_minute: int = 240
    elo_k: float = 1.0
    elo_initial: float = 1000.0
    elo_orders: int = 1000
    bootstrap_rounds: int = 1000
    bradley_terry_ridge: float = 0.01
    interval: float = 0.95
    seed: int = 0
    results_token: str | None = None

    @classmethod
    def from_mapping(cls, section: Mapping) -> "StudySettings":
        """Build from a plain dict shaped like the `study:` section of experiments/preference_study.yaml."""
        elo, bradley_terry, limit = section.get("elo"), section.get("bradley_terry"), section.get("rate_limit")
        if not all(isinstance(block, Mapping) for block in (elo, bradley_terry, limit)):
            raise UserError("study.elo, study.bradley_terry and study.rate_limit must be mappings (see "
                            "preference_study.yaml)")
        if not isinstance(section.get("open_enrollment"), bool):
            raise UserError(f"study.open_enrollment must be true or false, got {section.get('open_enrollment')!r}")
        host = section.get("host")
        if not isinstance(host, str) or not host:
            raise UserError(f"study.host must be an address such as 127.0.0.1, got {host!r}")
        token = section.get("results_token")
        if token is not None and (not isinstance(token, str) or len(token) < 8 or not token.isprintable()):
            raise UserError("study.results_token must be null or a secret of at least 8 printable characters")
        return cls(
            host=host,
            results_token=token,
            port=_number(section.get("port"), "port", 0, 65535, integer=True),
            votes_per_pair=_number(section.get("votes_per_pair"), "votes_per_pair", 1, 1000, integer=True),
            attention_check_rate=_number(section.get("attention_check_rate"), "attention_check_rate", 0.0, 0.9),
            attention_min_pass_rate=_number(section.get("attention_min_pass_rate"), "attention_min_pass_rate",
                                            0.0, 1.0),
            open_enrollment=section["open_enrollment"],
            lease_s=_number(section.get("lease_s"), "lease_s", 1.0, 7 * 24 * 3600.0),
            max_pending_per_address=_number(section.get("max_pending_per_address"), "max_pending_per_address",
                                            1, 100000, integer=True),
            rater_requests_per_minute=_number(limit.get("rater_per_minute"), "rate_limit.rater_per_minute",
                                              1, 1000000, integer=True),
            address_requests_per_minute=_number(limit.get("address_per_minute"), "rate_limit.address_per_minute",
                                                1, 1000000, integer=True),
            elo_k=_number(elo.get("k"), "elo.k", 1e-6, 1000.0),
            elo_initial=_number(elo.get("initial"), "elo.initial", -1e9, 1e9),
            elo_orders=_number(elo.get("orders"), "elo.orders", 1, 100000, integer=True),
            bootstrap_rounds=_number(bradley_terry.get("bootstrap_rounds"), "bradley_terry.bootstrap_rounds",
                                     1, 100000, integer=True),
            bradley_terry_ridge=_number(bradley_terry.get("ridge"), "bradley_terry.ridge", 1e-9, 100.0),
            interval=_number(section.get("interval"), "interval", 0.5, 0.999),
            seed=_number(section.get("seed"), "seed", 0, 2**63 - 1, integer=True),
        )
