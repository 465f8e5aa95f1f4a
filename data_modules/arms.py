"""The paper's curation ablation data: a reproducible random subset, threshold arms, and the combined filter.

- `random_subset`: the paper's LVD-10M is a random draw from the curated table. Membership is decided by a hash of
  (seed, clip_id), never by row order, so every engine, shard layout and machine draws the same subset.
- `threshold_arms`: per criterion, remove the worst 0 / 12.5 / 25 / 50 % of the subset (lowest aesthetic or CLIP
  score, most text, least motion). Each arm removes floor(f * n + 1/2) clips, ranked once, so arms are nested.
- `combined_filter`: the paper's LVD-F: several rules (a percentile or an absolute threshold such as text area above
  0.07), the count each removes on its own, and what survives all of them.
"""

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lightning_svd.errors import UserError
from lightning_svd.reporting.dataset_stats import column_statistics


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


def read_clip_table(path: str | Path) -> pa.Table:
    """Every part file of a clip table (a Parquet file or folder; `_`/`.`-prefixed markers are skipped)."""
    import pyarrow.dataset as ds

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"clip table not found: {path}; run `python run.py experiment=curate` or set its path")
    return ds.dataset(str(path), format="parquet").to_table()


def subset_key(seed: int, clip_id: str) -> int:
    """A clip's place in the random order of `seed`: 64 bits of sha256, the same on every machine."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()[:8], "big")


def ok_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table["status"], "ok"))


def random_subset(table: pa.Table, seed: int, size: int | None = None, fraction: float | None = None) -> pa.Table:
    """The `size` (or `fraction` of) ok clips that come first in the seed's hash order, in that order."""
    table = ok_rows(table)
    if (size is None) == (fraction is None):
        raise UserError("give exactly one of subset size or fraction")
    count = size if size is not None else int(math.floor(fraction * table.num_rows + 0.5))
    if not 0 < count <= table.num_rows:
        raise UserError(f"subset of {count} clips asked from a table of {table.num_rows} ok clips")
    keys = [subset_key(seed, clip_id) for clip_id in table["clip_id"].to_pylist()]
    return table.take(np.argsort(keys, kind="stable")[:count])


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

    def summary(self) -> dict:
        return {"name": self.name, "criterion": self.criterion, "removed_fraction": self.removed_fraction,
                "num_clips": self.num_clips, "threshold": self.threshold, **table_statistics(self.table)}


def worst_first(table: pa.Table, criterion: str, seed: int = 0) -> np.ndarray:
    """Row order from the worst score to the best; ties broken by the hash order so the ranking is total."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown criterion '{criterion}'; valid criteria: {', '.join(CRITERIA)}")
    spec = CRITERIA[criterion]
    if spec.column not in table.column_names:
        raise UserError(f"the clip table has no column {spec.column}; curate with that score switched on")
    scores = table[spec.column].to_pylist()
    missing = sum(s is None for s in scores)
    if missing:
        raise UserError(f"{missing} clips have no {spec.column}; the {criterion} ablation needs it for every clip")
    values = np.asarray(scores, dtype=np.float64)
    badness = values if spec.worst == "lowest" else -values
    ties = np.array([subset_key(seed, c) for c in table["clip_id"].to_pylist()], dtype=np.uint64)
    return np.lexsort((ties, badness))


def removed_count(fraction: float, total: int) -> int:
    if not 0 <= fraction < 1:
        raise UserError(f"a removed fraction must be in [0, 1), got {fraction}")
    return int(math.floor(fraction * total + 0.5))


def threshold_arms(table: pa.Table, criterion: str, removed_fractions=PAPER_REMOVED_FRACTIONS, seed: int = 0):
    """One arm per removed fraction, each removing the worst clips of a single ranking (so arms are nested)."""
    table = ok_rows(table)
    order = worst_first(table, criterion, seed)
    column = CRITERIA[criterion].column
    arms = []
    for fraction in sorted(removed_fractions):
        removed = removed_count(fraction, table.num_rows)
        kept = np.sort(order[removed:])
        threshold = float(table[column][int(order[removed])].as_py()) if removed else None
        percent = f"{100 * fraction:g}".replace(".", "_")
        arms.append(Arm(f"{criterion}_remove_{percent}pct", criterion, fraction, threshold, table.take(kept)))
    return arms


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
        mask = np.zeros(table.num_rows, dtype=bool)
        order = worst_first(table, self.criterion, seed)
        if self.remove_fraction is not None:
            mask[order[:removed_count(self.remove_fraction, table.num_rows)]] = True
            return mask
        values = np.asarray(table[CRITERIA[self.criterion].column].to_pylist(), dtype=np.float64)
        return values > self.threshold if CRITERIA[self.criterion].worst == "highest" else values < self.threshold

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


def combined_filter(table: pa.Table, rules=PAPER_RULES, seed: int = 0) -> dict:
    """Apply every rule to the same table: each rule's own count, the clips surviving all, and their table."""
    table = ok_rows(table)
    masks = {rule.describe(): rule.removed_mask(table, seed) for rule in rules}
    removed_any = np.logical_or.reduce(list(masks.values())) if masks else np.zeros(table.num_rows, bool)
    kept = table.filter(pa.array(~removed_any))
    return {
        "rules": [{"rule": name, "removed": int(mask.sum())} for name, mask in masks.items()],
        "num_input": table.num_rows,
        "num_removed": int(removed_any.sum()),
        "num_kept": kept.num_rows,
        "table": kept,
    }


def table_statistics(table: pa.Table) -> dict:
    """Table 1-style statistics of any clip table or arm."""
    columns = ("video_path", "start_s", "end_s", "num_frames", "status", "flow_score")
    return column_statistics({c: table[c].to_pylist() for c in columns})
