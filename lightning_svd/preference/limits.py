"""How much one requester may take: requests per minute (token buckets) and, under open enrolment, pairs held.

Both live in memory: a restart forgets them, which costs an abuser one more burst at most, while votes and links
stay in the database.
"""

import math
import threading
import time
from collections.abc import Callable

from lightning_svd.preference.problems import TooManyRequests

MAX_BUCKETS = 10000


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, in bursts of up to that many."""

    def __init__(self, per_minute: int, what: str, clock: Callable[[], float] = time.monotonic):
        self.rate, self.capacity, self.what, self.clock = per_minute / 60.0, float(per_minute), what, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one request of `key`, or raise TooManyRequests saying when the next one is allowed."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens < 1.0:
                wait = (1.0 - tokens) / self.rate
                raise TooManyRequests(f"too many requests from this {self.what}; try again in {math.ceil(wait)} s",
                                      wait)
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they hold nothing a new bucket would not (bounds memory)."""
        self._buckets = {key: (tokens, then) for key, (tokens, then) in self._buckets.items()
                         if tokens + (now - then) * self.rate < self.capacity}


class OpenLeases:
    """Pairs held unanswered per client address under open enrolment, where names are free: the address is what
    a cap can hold to, so inventing names cannot reserve the study."""

    def __init__(self, cap: int, clock: Callable[[], float] = time.time):
        self.cap, self.clock = cap, clock
        self._expiry: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def hold(self, address: str, pair_id: str, until: float) -> None:
        """Count a new pair against `address`, or raise TooManyRequests when it already holds `cap` of them."""
        now = self.clock()
        with self._lock:
            self._expiry = {pair: entry for pair, entry in self._expiry.items() if entry[1] > now}
            held = [expires for holder, expires in self._expiry.values() if holder == address]
            if len(held) >= self.cap:
                raise TooManyRequests(f"this address holds {len(held)} unanswered pairs (the most open enrolment "
                                      "allows); answer them first", min(held) - now)
            self._expiry[pair_id] = (address, until)

    def release(self, pair_id: str) -> None:
        with self._lock:
            self._expiry.pop(pair_id, None)
