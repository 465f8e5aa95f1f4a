"""The random subset of a clip table on disk, by engine; every engine draws exactly `arms.random_subset`'s clips,
and returns them in table order (gathering rows in hash order costs more than the rest of the draw).

- `memory`: read the needed columns, hash the ok clips' ids, filter once. Fastest while the table fits.
- `streaming`: read the table in batches and keep only the clips whose hash keys are among the `count` smallest so
  far (a cutoff key filters each batch), so memory holds the subset and a batch, never the table.
- `ray`: Ray Data hashes and filters the table's blocks across a cluster against a cutoff key set from the clip
  count (keys are uniform 64-bit hashes, so the cutoff keeps the subset plus a margin of a few standard deviations);
  the driver collects only those candidates and picks the subset from them, widening the margin if it ever fell
  short. `ray.address` null starts a local Ray instance (`ray.num_cpus` caps it); "auto" or ray://host:port joins
  a cluster where every node has this package and the table at the same path.

Ties in the hash key (only a clip id listed twice) go to the row that comes first in the table, on every engine.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_modules.arms import first_mask, subset_count, subset_keys
from lightning_svd.clip_table import OK, ClipTable, ok_rows
from lightning_svd.errors import UserError

ENGINES = ("memory", "streaming", "ray")
KEY_SPACE = 1 << 64
KEY_COLUMN = "subset_key"  # the hash key travelling with Ray's candidates


@dataclass(frozen=True)
class SubsetSpec:
    """Which subset (`ablation.subset`: seed and size or fraction) and how to draw it (engine, batch, Ray)."""

    seed: int
    size: int | None = None
    fraction: float | None = None
    engine: str = "memory"
    batch_rows: int = 1_000_000
    ray_address: str | None = None
    ray_num_cpus: int | None = None

    def __post_init__(self):
        if (self.size is None) == (self.fraction is None):
            raise UserError("give exactly one of ablation.subset.size or ablation.subset.fraction (the other null)")
        if self.size is not None and self.size < 1 or self.fraction is not None and not 0 < self.fraction <= 1:
            raise UserError(f"ablation.subset: size must be at least 1 and fraction in (0, 1], got size={self.size}, "
                            f"fraction={self.fraction}")
        if self.engine not in ENGINES:
            raise UserError(f"unknown ablation.subset.engine {self.engine!r}; valid: {', '.join(ENGINES)}")
        if self.batch_rows < 1:
            raise UserError(f"ablation.subset.batch_rows must be at least 1, got {self.batch_rows}")

    @classmethod
    def from_config(cls, section) -> "SubsetSpec":
        return cls(int(section.seed), None if section.size is None else int(section.size),
                   None if section.fraction is None else float(section.fraction), str(section.engine),
                   int(section.batch_rows), section.ray.address, section.ray.num_cpus)


def draw_subset(source: ClipTable, columns: Sequence[str], spec: SubsetSpec) -> pa.Table:
    """`columns` of the subset's clips (the members of `random_subset`), in table order."""
    columns = list(dict.fromkeys(["clip_id", "status", *columns]))
    source.require(columns, "the subset reads them")
    if spec.engine == "memory":
        return memory_subset(source.read(columns), spec)
    if spec.engine == "streaming":
        return streaming_subset(source, columns, spec)
    return RaySubset(spec).draw(source, columns)


def memory_subset(table: pa.Table, spec: SubsetSpec) -> pa.Table:
    """The subset of a table in memory (every status), in one pass of filtering: the ok rows and the subset's."""
    ok = np.flatnonzero(pc.fill_null(pc.equal(table["status"], OK), False).to_numpy(zero_copy_only=False))
    count = subset_count(len(ok), spec.size, spec.fraction)
    clip_ids = table["clip_id"] if len(ok) == table.num_rows else table["clip_id"].take(ok)
    chosen = np.zeros(table.num_rows, dtype=bool)
    chosen[ok[first_mask(subset_keys(spec.seed, clip_ids), count)]] = True
    return table.filter(pa.array(chosen))


def count_ok(source: ClipTable, batch_rows: int) -> int:
    """The table's ok clips, reading only its status column."""
    return sum(batch.num_rows for batch in source.batches(["status"], batch_rows, ok_only=True))


class Candidates:
    """Rows held in table order with their hash keys; `keep(count)` drops all but the `count` first in key order."""

    def __init__(self):
        self.tables: list[pa.Table] = []
        self.keys: list[np.ndarray] = []
        self.rows = 0

    def add(self, table: pa.Table, keys: np.ndarray) -> None:
        self.tables.append(table)
        self.keys.append(keys)
        self.rows += table.num_rows

    def keep(self, count: int) -> np.uint64:
        """Keep the `count` rows first in key order (still in table order) and return the largest key kept."""
        keys = np.concatenate(self.keys)
        chosen = first_mask(keys, count)
        self.tables, self.keys = [pa.concat_tables(self.tables).filter(pa.array(chosen))], [keys[chosen]]
        self.rows = len(self.keys[0])
        return self.keys[0].max()


def streaming_subset(source: ClipTable, columns: list[str], spec: SubsetSpec) -> pa.Table:
    """One pass in batches (a second, of the status column only, when the subset is a fraction): memory holds the
    subset, at most half a subset or a batch more, and the batch being read."""
    count = spec.size if spec.fraction is None else subset_count(count_ok(source, spec.batch_rows), None, spec.fraction)
    held, cutoff, seen = Candidates(), None, 0
    for batch in source.batches(columns, spec.batch_rows, ok_only=True):
        seen += batch.num_rows
        keys = subset_keys(spec.seed, batch["clip_id"])
        if cutoff is not None:  # a later row with the cutoff's key loses the tie to the one held
            below = keys < cutoff
            batch, keys = batch.filter(pa.array(below)), keys[below]
        held.add(batch, keys)
        if held.rows >= count + max(count // 2, spec.batch_rows):
            cutoff = held.keep(count)
    subset_count(seen, size=count)  # a table with fewer ok clips than the subset is an error, as in memory
    held.keep(count)
    return held.tables[0]


def below_cutoff(batch: pa.Table, seed: int, cutoff: int | None, schema: pa.Schema) -> pa.Table:
    """A Ray Data batch: its ok rows whose hash key is below `cutoff` (all of them for None), with their keys, in
    the contract's types (a part whose column is all null stores it as null)."""
    batch = ok_rows(batch).select(schema.names).cast(schema)
    keys = subset_keys(seed, batch["clip_id"])
    below = np.ones(len(keys), dtype=bool) if cutoff is None else keys < np.uint64(cutoff)
    return batch.filter(pa.array(below)).append_column(KEY_COLUMN, pa.array(keys[below], pa.uint64()))


def ok_count(batch: pa.Table) -> pa.Table:
    return pa.table({"ok": [ok_rows(batch).num_rows]})


class RaySubset:
    """The subset on Ray Data: count the ok clips, then hash and filter blocks in parallel against a cutoff key."""

    def __init__(self, spec: SubsetSpec):
        self.spec = spec

    def draw(self, source: ClipTable, columns: list[str]) -> pa.Table:
        import ray

        started = self._start(ray)
        context = ray.data.DataContext.get_current()
        kept_order, kept_bars = context.execution_options.preserve_order, context.enable_progress_bars
        context.execution_options.preserve_order, context.enable_progress_bars = True, False  # table order for ties
        try:
            return self._draw(ray, source, columns)
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = kept_order, kept_bars
            if started:
                ray.shutdown()

    def _start(self, ray) -> bool:
        """Join or start Ray; True when this call started it and so shuts it down afterwards."""
        if ray.is_initialized():
            return False
        if self.spec.ray_address:
            ray.init(address=self.spec.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.spec.ray_num_cpus, include_dashboard=False, log_to_driver=False)
        return True

    def _draw(self, ray, source: ClipTable, columns: list[str]) -> pa.Table:
        files, spec = [str(f) for f in source.files], self.spec
        statuses = ray.data.read_parquet(files).select_columns(["status"]).map_batches(ok_count, batch_format="pyarrow")
        total = sum(int(pc.sum(t["ok"]).as_py() or 0) for t in ray.get(statuses.to_arrow_refs()))
        count = subset_count(total, spec.size, spec.fraction)
        schema = pa.schema([source.dataset.schema.field(c) for c in columns])
        data = ray.data.read_parquet(files).select_columns(columns)
        for sigmas in (8, 64, None):  # None: no cutoff, should the keys ever be far from uniform (repeated ids)
            # the count-th smallest of `total` uniform keys lies near count / total of the key space
            share = None if sigmas is None else (count + sigmas * math.sqrt(count) + sigmas) / total
            cutoff = None if share is None or share >= 1 else int(share * KEY_SPACE)
            candidates = data.map_batches(below_cutoff, fn_kwargs={"seed": spec.seed, "cutoff": cutoff,
                                                                   "schema": schema},
                                          batch_format="pyarrow", batch_size=spec.batch_rows)
            table = pa.concat_tables([schema.append(pa.field(KEY_COLUMN, pa.uint64())).empty_table(),
                                      *ray.get(candidates.to_arrow_refs())])
            if table.num_rows >= count:
                break
        chosen = first_mask(table[KEY_COLUMN].to_numpy(), count)
        return source.resolved(table.drop_columns([KEY_COLUMN]).filter(pa.array(chosen)))
