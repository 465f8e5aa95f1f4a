"""The ablation data: reproducible subsets, exact nested threshold arms, the combined filter, Table 1 statistics."""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_modules.arms import (
    PAPER_REMOVED_FRACTIONS,
    Rule,
    combined_filter,
    random_subset,
    subset_key,
    threshold_arms,
)
from lightning_svd.clip_table import read_clip_table, table_statistics
from lightning_svd.errors import UserError


def clip_table(n: int = 203, seed: int = 0, errors: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n + errors):
        ok = i < n
        start = float(rng.uniform(0, 20))
        rows.append({
            "clip_id": f"clip{i:05d}", "video_path": f"/videos/v{i % 37}.mp4", "start_s": start,
            "end_s": start + float(rng.uniform(1, 8)), "num_frames": int(rng.integers(24, 200)),
            "status": "ok" if ok else "error",
            "aesthetic_score": float(rng.uniform(0, 10)) if ok else None,
            "clip_score": float(rng.normal(0.3, 0.05)) if ok else None,
            "ocr_area": float(rng.choice([0.0, rng.uniform(0, 0.2)])) if ok else None,
            "flow_score": float(rng.exponential(2.0)) if ok else None,
        })
    order = rng.permutation(len(rows))
    return pa.Table.from_pylist([rows[i] for i in order])


def test_subset_is_decided_by_seed_and_clip_id_not_row_order():
    table = clip_table()
    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows))
    a = random_subset(table, seed=3, size=50)["clip_id"].to_pylist()
    b = random_subset(shuffled, seed=3, size=50)["clip_id"].to_pylist()
    assert a == b and len(set(a)) == 50
    assert random_subset(table, seed=4, size=50)["clip_id"].to_pylist() != a
    assert random_subset(table, seed=3, fraction=0.5).num_rows == 102  # floor(0.5 * 203 + 1/2)
    assert set(a) <= set(random_subset(table, seed=3, size=120)["clip_id"].to_pylist())  # growing is nested
    assert all(s == "ok" for s in random_subset(table, seed=3, size=203)["status"].to_pylist())


def test_subset_order_is_pinned_so_every_machine_and_engine_draws_the_same_clips():
    """Literal keys (sha256 of "seed:clip_id"): a change of hash, platform or library would change every subset."""
    assert subset_key(0, "clip00000") == 4503869713568434547
    assert subset_key(7, "v/abc#12") == 9494205539962916332
    table = pa.Table.from_pylist([{"clip_id": f"c{i}", "status": "ok"} for i in range(6)])
    assert random_subset(table, seed=5, size=3)["clip_id"].to_pylist() == ["c4", "c2", "c0"]


def tied_table() -> pa.Table:
    """500 ok clips where 30 % have a flow score of exactly 0 (static), so arm boundaries fall inside ties."""
    table = clip_table(n=500, seed=2, errors=7)
    static = np.random.default_rng(5).random(table.num_rows) < 0.3
    flow = [None if s != "ok" else 0.0 if still else f
            for f, s, still in zip(table["flow_score"].to_pylist(), table["status"].to_pylist(), static)]
    return table.set_column(table.column_names.index("flow_score"), "flow_score", pa.array(flow, pa.float64()))


def digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def test_subsets_and_arms_are_pinned_bit_for_bit():
    """Recorded from the per-clip hashlib loop before it was vectorised: earlier runs' subsets and arms stay valid."""
    table = tied_table()
    assert random_subset(table, 3, size=12)["clip_id"].to_pylist() == [
        "clip00482", "clip00303", "clip00470", "clip00359", "clip00260", "clip00449", "clip00141", "clip00324",
        "clip00318", "clip00384", "clip00198", "clip00261"]
    assert digest(random_subset(table, 11, fraction=1.0)["clip_id"].to_pylist()) == "877f06481288926b"
    subset = random_subset(table, 3, size=400)
    pinned = {
        "aesthetic": ["dbdab9184c243a7d", "b4eaf74bf86a6403", "990ab1d6adb23a24", "6b02f6b29aa10327"],
        "clip": ["dbdab9184c243a7d", "efd15026e4fad759", "5dd4aa18cfc7da5b", "7d363d9c5e2ecd85"],
        "ocr": ["dbdab9184c243a7d", "0f43ab4959ab2d42", "2c3648ed4fa76061", "bf42b021a63bea42"],
        "flow": ["dbdab9184c243a7d", "ec62b78a4fba2b8b", "67ed30ddc31a6ee4", "d711aeaf9bd37b8e"],
    }
    for criterion, digests in pinned.items():
        assert [digest(arm.table["clip_id"].to_pylist()) for arm in threshold_arms(subset, criterion, seed=3)] == \
            digests, criterion
    assert [arm.threshold for arm in threshold_arms(subset, "flow", seed=3)] == [None, 0.0, 0.0, 0.5997700428314856]
    assert digest(combined_filter(subset, seed=3).table["clip_id"].to_pylist()) == "6e6880ccebfc844c"


def test_subset_survives_a_parquet_round_trip_in_parts(tmp_path):
    table = clip_table()
    for i, start in enumerate(range(0, table.num_rows, 60)):
        pq.write_table(table.slice(start, 60), tmp_path / f"part-{i:05d}.parquet")
        (tmp_path / f"_part-{i:05d}.done.json").write_text("{}")
    pq.write_table(table.slice(0, 10), tmp_path / "part-00009.parquet")  # an unfinished shard: no marker yet
    loaded = read_clip_table(tmp_path)
    assert loaded.num_rows == table.num_rows
    assert random_subset(loaded, 9, size=40)["clip_id"].to_pylist() == random_subset(table, 9, size=40)[
        "clip_id"].to_pylist()


@pytest.mark.parametrize(("criterion", "column", "worst"), [
    ("aesthetic", "aesthetic_score", "lowest"), ("clip", "clip_score", "lowest"),
    ("ocr", "ocr_area", "highest"), ("flow", "flow_score", "lowest")])
def test_arms_are_exact_nested_and_remove_the_worst(criterion, column, worst):
    table = random_subset(clip_table(), seed=0, size=160)
    arms = threshold_arms(table, criterion)
    assert [a.removed_fraction for a in arms] == list(PAPER_REMOVED_FRACTIONS)
    assert [a.num_clips for a in arms] == [160, 140, 120, 80]
    ids = [set(a.table["clip_id"].to_pylist()) for a in arms]
    assert all(later <= earlier for earlier, later in zip(ids, ids[1:]))
    everything = np.asarray(table[column].to_pylist())
    for arm in arms[1:]:
        kept = np.asarray(arm.table[column].to_pylist())
        removed = np.asarray([v for c, v in zip(table["clip_id"].to_pylist(), everything) if c not in set(
            arm.table["clip_id"].to_pylist())])
        if worst == "lowest":
            assert kept.min() >= removed.max() and arm.threshold == kept.min()
        else:
            assert kept.max() <= removed.min() and arm.threshold == kept.max()
    assert arms[0].threshold is None


def test_combined_filter_counts_each_rule_and_the_intersection():
    table = clip_table(n=400)
    result = combined_filter(table, seed=0)
    counts = {r.rule: r.removed for r in result.rules}
    assert counts["flow: remove the lowest 25 %"] == 100
    assert counts["clip: remove the lowest 50 %"] == 200
    ocr = np.asarray([v for v, s in zip(table["ocr_area"].to_pylist(), table["status"].to_pylist()) if s == "ok"])
    assert counts["ocr: remove ocr_area > 0.07"] == int((ocr > 0.07).sum())
    assert max(counts.values()) <= result.num_removed <= sum(counts.values())
    assert result.num_kept == 400 - result.num_removed == result.table.num_rows
    kept = result.table
    assert max(kept["ocr_area"].to_pylist()) <= 0.07


def test_statistics_of_an_arm_and_clear_errors():
    table = random_subset(clip_table(), seed=0, size=100)
    stats = table_statistics(table)
    durations = np.asarray(table["end_s"].to_pylist()) - np.asarray(table["start_s"].to_pylist())
    assert stats.num_clips == 100
    assert stats.mean_clip_duration_s == pytest.approx(durations.mean())
    assert stats.mean_clips_per_video == pytest.approx(100 / len(set(table["video_path"].to_pylist())))
    with pytest.raises(UserError, match="unknown criterion 'beauty'; valid criteria: aesthetic, clip, ocr, flow"):
        threshold_arms(table, "beauty")
    with pytest.raises(UserError, match="remove_fraction or threshold"):
        combined_filter(table, [Rule("ocr")])
    with pytest.raises(UserError, match="subset of 500 clips"):
        random_subset(table, 0, size=500)
