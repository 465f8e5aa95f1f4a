"""The paper's curation ablation data: a reproducible random subset, threshold arms, and the combined filter.

- `random_subset`: the paper's LVD-10M is a random draw from the curated table. Membership is decided by a hash of
  (seed, clip_id), never by row order, so every engine, shard layout and machine draws the same subset
  (data_modules/subsets.py draws it from tables too large for memory).
- `threshold_arms`: per criterion, remove the worst 0 / 12.5 / 25 / 50 % of the subset (lowest aesthetic or CLIP
  score, most text, least motion). Each arm removes floor(f * n + 1/2) clips of one total order (worst score first,
  ties by hash), so arms are nested.
- `combined_filter`: the paper's LVD-F: several rules (a percentile or an absolute threshold such as text area above
  0.07), the count each removes on its own, and what survives all of them.

Everything works on Arrow columns and numpy: the only per-row Python is hashlib's sha256 of each clip id (about
0.5 us a clip), and the worst clips are found by partition, hashing only the clips tied at the boundary.
"""

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lightning_svd.clip_table import ok_rows
from lightning_svd.errors import UserError


@dataclass(frozen=True)
class Criterion:
    column: str
    worst: str  # which end of the score the ablation removes: "lowest" or "highest"


CRITERIA = {
    "aesthetic": Criterion("aesthetic_score", "lowest"),
    "clip": Criterion("clip_score", "lowest"),
    "ocr": Criterion("ocr_area", "highest"),
    "flow": Criterion("flow_score", "lowest"),
}
PAPER_REMOVED_FRACTIONS = (0.0, 0.125, 0.25, 0.5)
HASH_SLICE = 1 << 18  # clip ids turned into Python bytes at a time


def subset_key(seed: int, clip_id: str) -> int:
    """A clip's place in the random order of `seed`: 64 bits of sha256, the same on every machine."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()[:8], "big")


def subset_keys(seed: int, clip_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """`subset_key` of every clip id, as uint64, a slice at a time so no whole column becomes Python objects."""
    if clip_ids.null_count:
        raise UserError(f"{clip_ids.null_count} clips have no clip_id; the clip-table contract gives every clip one")
    prefix = hashlib.sha256(f"{seed}:".encode())

    def digest(clip_id: bytes) -> bytes:
        state = prefix.copy()
        state.update(clip_id)
        return state.digest()[:8]

    slices = [b"".join(map(digest, clip_ids.slice(start, HASH_SLICE).cast(pa.binary()).to_pylist()))
              for start in range(0, len(clip_ids), HASH_SLICE)]
    return np.frombuffer(b"".join(slices), dtype=">u8").astype(np.uint64)


def first_mask(keys: np.ndarray, count: int) -> np.ndarray:
    """A mask of the `count` smallest keys, ties at the boundary going to the earlier index: the members of
    `np.argsort(keys, kind="stable")[:count]`, found by partition."""
    mask = np.zeros(len(keys), dtype=bool)
    if count >= len(keys) or count == 0:
        mask[:count] = True
        return mask
    kth = np.partition(keys, count - 1)[count - 1]
    mask[keys < kth] = True
    mask[np.flatnonzero(keys == kth)[: count - int(mask.sum())]] = True
    return mask


def first_in_order(keys: np.ndarray, count: int) -> np.ndarray:
    """The indices of the `count` smallest keys in (key, index) order: `np.argsort(keys, kind="stable")[:count]`,
    sorting only the chosen ones."""
    chosen = np.flatnonzero(first_mask(keys, count))
    return chosen[np.argsort(keys[chosen], kind="stable")]


def subset_count(total: int, size: int | None = None, fraction: float | None = None) -> int:
    """How many of `total` ok clips a subset of `size` clips or `fraction` of them holds."""
    if (size is None) == (fraction is None):
        raise UserError("give exactly one of subset size or fraction")
    count = size if size is not None else int(math.floor(fraction * total + 0.5))
    if not 0 < count <= total:
        raise UserError(f"subset of {count} clips asked from a table of {total} ok clips")
    return count


def random_subset(table: pa.Table, seed: int, size: int | None = None, fraction: float | None = None) -> pa.Table:
    """The `size` (or `fraction` of) ok clips that come first in the seed's hash order, in that order."""
    table = ok_rows(table)
    count = subset_count(table.num_rows, size, fraction)
    return table.take(first_in_order(subset_keys(seed, table["clip_id"]), count))


@dataclass
class Arm:
    name: str
    criterion: str
    removed_fraction: float
    threshold: float | None  # the worst score still kept (None for the arm that removes nothing)
    table: pa.Table
    proxy_overrides: tuple[str, ...] = ()  # key=value strings over the proxy config: what else differs in the arm

    @property
    def num_clips(self) -> int:
        return self.table.num_rows


def badness(table: pa.Table, criterion: str) -> np.ndarray:
    """Each clip's score on `criterion`, signed so that larger is better-kept: the worst clips have the smallest."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown criterion '{criterion}'; valid criteria: {', '.join(CRITERIA)}")
    spec = CRITERIA[criterion]
    if spec.column not in table.column_names:
        raise UserError(f"the clip table has no column {spec.column}; curate with that score switched on")
    values = table[spec.column].to_numpy().astype(np.float64)  # nulls become NaN
    missing = int(np.isnan(values).sum())
    if missing:
        raise UserError(f"{missing} clips have no {spec.column}; the {criterion} ablation needs it for every clip")
    return values if spec.worst == "lowest" else -values


def worst_rows(table: pa.Table, bad: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A mask of the `count` worst clips: smallest `bad` first, ties broken by the hash order of `seed` (then by row),
    so the order is total and every count takes a prefix of it. Only the clips tied at the boundary are hashed."""
    mask = np.zeros(len(bad), dtype=bool)
    if count == 0:
        return mask
    kth = np.partition(bad, count - 1)[count - 1]
    mask[bad < kth] = True
    ties = np.flatnonzero(bad == kth)
    needed = count - int(mask.sum())
    if needed < len(ties):
        ties = ties[np.argsort(subset_keys(seed, table["clip_id"].take(ties)), kind="stable")[:needed]]
    mask[ties] = True
    return mask


def removed_count(fraction: float, total: int) -> int:
    if not 0 <= fraction < 1:
        raise UserError(f"a removed fraction must be in [0, 1), got {fraction}")
    return int(math.floor(fraction * total + 0.5))


@dataclass(frozen=True)
class ArmCut:
    """An arm before its table is cut: which clips of the ranked table it keeps (a mask), so a caller can handle
    one arm of a large table at a time."""

    name: str
    criterion: str
    removed_fraction: float
    threshold: float | None  # the worst score still kept (None for the arm that removes nothing)
    kept: np.ndarray


def threshold_cuts(table: pa.Table, criterion: str, removed_fractions=PAPER_REMOVED_FRACTIONS,
                   seed: int = 0) -> list[ArmCut]:
    """One cut per removed fraction of the ok clips of `table`, each removing the worst clips of a single ranking."""
    table = ok_rows(table)
    bad = badness(table, criterion)
    cuts = []
    for fraction in sorted(removed_fractions):
        removed = removed_count(fraction, table.num_rows)
        kept = ~worst_rows(table, bad, removed, seed)
        threshold = None
        if removed:  # the first clip kept in the ranking, back in the score's own sign
            first_kept = float(bad[kept].min())
            threshold = -first_kept if CRITERIA[criterion].worst == "highest" else first_kept
        percent = f"{100 * fraction:g}".replace(".", "_")
        cuts.append(ArmCut(f"{criterion}_remove_{percent}pct", criterion, fraction, threshold, kept))
    return cuts


def threshold_arms(table: pa.Table, criterion: str, removed_fractions=PAPER_REMOVED_FRACTIONS,
                   seed: int = 0) -> list[Arm]:
    """One arm per removed fraction, each removing the worst clips of a single ranking (so arms are nested)."""
    table = ok_rows(table)
    return [Arm(cut.name, criterion, cut.removed_fraction, cut.threshold, table.filter(pa.array(cut.kept)))
            for cut in threshold_cuts(table, criterion, removed_fractions, seed)]


@dataclass(frozen=True)
class Rule:
    """Remove the worst `remove_fraction` of one criterion, or every clip past an absolute `threshold`."""

    criterion: str
    remove_fraction: float | None = None
    threshold: float | None = None

    def __post_init__(self):
        if (self.remove_fraction is None) == (self.threshold is None):
            raise UserError(f"rule on {self.criterion}: give exactly one of remove_fraction or threshold")

    def removed_mask(self, table: pa.Table, seed: int = 0) -> np.ndarray:
        bad = badness(table, self.criterion)
        if self.remove_fraction is not None:
            return worst_rows(table, bad, removed_count(self.remove_fraction, table.num_rows), seed)
        limit = -self.threshold if CRITERIA[self.criterion].worst == "highest" else self.threshold
        return bad < limit

    def describe(self) -> str:
        column = CRITERIA[self.criterion].column
        if self.remove_fraction is not None:
            return f"{self.criterion}: remove the {CRITERIA[self.criterion].worst} {100 * self.remove_fraction:g} %"
        side = ">" if CRITERIA[self.criterion].worst == "highest" else "<"
        return f"{self.criterion}: remove {column} {side} {self.threshold:g}"


# The paper's final cuts (section 3.3 / App. E.2.2): least motion 25 %, lowest aesthetics 25 %, lowest CLIP score
# 50 %, text area above 7 % of the frame.
PAPER_RULES = (
    Rule("flow", remove_fraction=0.25),
    Rule("aesthetic", remove_fraction=0.25),
    Rule("clip", remove_fraction=0.5),
    Rule("ocr", threshold=0.07),
)


@dataclass(frozen=True)
class RuleCount:
    rule: str
    removed: int  # clips this rule removes on its own


@dataclass
class CombinedFilter:
    """What the combined filter did to a table: each rule's own count, and the clips that survive every rule (as a
    mask over the table's ok rows, and as a table)."""

    rules: tuple[RuleCount, ...]
    num_input: int
    num_removed: int
    kept: np.ndarray
    table: pa.Table

    @property
    def num_kept(self) -> int:
        return self.table.num_rows


def combined_filter(table: pa.Table, rules=PAPER_RULES, seed: int = 0) -> CombinedFilter:
    """Apply every rule to the same table: each rule's own count, the clips surviving all, and their table."""
    table = ok_rows(table)
    removed_any = np.zeros(table.num_rows, dtype=bool)
    counts = []
    for rule in rules:
        mask = rule.removed_mask(table, seed)
        counts.append(RuleCount(rule.describe(), int(mask.sum())))
        removed_any |= mask
    kept = ~removed_any
    return CombinedFilter(tuple(counts), table.num_rows, int(removed_any.sum()), kept, table.filter(pa.array(kept)))
