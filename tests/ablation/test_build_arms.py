"""experiment=build_arms: the subset, exact nested arms and LVD-F as files, the same from every engine."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from data_modules.arms import combined_filter, random_subset, threshold_arms
from lightning_svd.clip_table import read_clip_table, table_statistics
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.run_context import create_run
from lightning_svd.tasks import build_arms

FRACTIONS = (0.0, 0.125, 0.25, 0.5)


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    """1,030 clips (30 error rows) in 4 parts; a third of the flow scores exactly 0, so arm boundaries fall in ties."""
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("clips")
    n = 1030
    ok = np.arange(n) % 34 != 5
    start = rng.uniform(0, 30, n)

    def score(values):
        return pa.array(np.where(ok, values, np.nan), mask=~ok)

    rows = pa.table({
        "clip_id": [f"c{i:04d}" for i in range(n)], "video_path": [f"/v/{i % 113}.mp4" for i in range(n)],
        "start_s": start, "end_s": start + rng.uniform(1, 9, n), "num_frames": rng.integers(24, 240, n),
        "fps": np.full(n, 24.0), "status": np.where(ok, "ok", "error"),
        "aesthetic_score": score(rng.uniform(0, 10, n)), "clip_score": score(rng.normal(0.3, 0.05, n)),
        "ocr_area": score(np.where(rng.random(n) < 0.6, 0.0, rng.uniform(0, 0.2, n))),
        "flow_score": score(np.where(rng.random(n) < 0.33, 0.0, rng.exponential(2.0, n))),
        "clip_score_model": pa.array(["open_clip ViT-S-32 weights=random"] * n, mask=~ok),
    })
    for index, piece in enumerate(np.array_split(np.arange(n), 4)):
        pq.write_table(rows.take(piece), folder / f"part-{index:05d}.parquet")
    return folder


def build(table_dir, run_dir, *overrides):
    cfg = load_config("build_arms", overrides=[f"ablation.clip_table={table_dir}", "ablation.subset.size=800",
                                               "ablation.subset.fraction=null", "ablation.subset.seed=2",
                                               "ablation.criterion=flow", f"run_dir={run_dir}", *overrides])
    with create_run(cfg) as ctx:
        return build_arms.run(cfg, ctx)


@pytest.fixture(scope="module")
def built(table_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("build_arms")
    returned = build(table_dir, run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results == json.loads(json.dumps(returned))
    return run_dir, results


def subset_in_table_order(table_dir) -> pa.Table:
    """`random_subset`'s clips (the pinned draw), in the order of the table (the order build_arms writes)."""
    table = read_clip_table(table_dir)
    members = random_subset(table, 2, size=800)["clip_id"]
    return table.filter(pc.is_in(table["clip_id"], value_set=members.combine_chunks()))


def ids(path) -> list[str]:
    return pq.read_table(path, columns=["clip_id"])["clip_id"].to_pylist()


def test_the_subset_is_the_pinned_random_subset_and_the_arms_are_exact_and_nested(table_dir, built):
    run_dir, results = built
    subset = subset_in_table_order(table_dir)
    assert ids(run_dir / "subset.parquet") == subset["clip_id"].to_pylist()
    arms = threshold_arms(subset, "flow", FRACTIONS, seed=2)
    assert [a["num_clips"] for a in results["arms"]] == [800 - math.floor(f * 800 + 0.5) for f in FRACTIONS] \
        == [800, 700, 600, 400]
    written = [ids(run_dir / a["path"]) for a in results["arms"]]
    assert written == [arm.table["clip_id"].to_pylist() for arm in arms]
    assert all(set(later) <= set(earlier) for earlier, later in zip(written, written[1:]))
    assert [a["threshold"] for a in results["arms"]] == [arm.threshold for arm in arms]
    assert results["arms"][1]["threshold"] == 0.0  # the 12.5 % cut falls inside the clips without motion
    assert pq.read_table(run_dir / "arms" / "flow_remove_25pct.parquet").column_names == [
        "clip_id", "clip_score", "aesthetic_score", "ocr_area", "flow_score"]


def test_lvd_f_counts_each_rule_and_table1_statistics_per_set(table_dir, built):
    run_dir, results = built
    subset = subset_in_table_order(table_dir)
    lvd_f = combined_filter(subset, seed=2)
    assert ids(run_dir / "lvd_f.parquet") == lvd_f.table["clip_id"].to_pylist()
    assert results["lvd_f_rules"] == [{"rule": r.rule, "removed": r.removed} for r in lvd_f.rules]
    assert [r["removed"] for r in results["lvd_f_rules"][:3]] == [200, 200, 400]
    assert results["lvd_f"]["num_clips"] == lvd_f.num_kept < 800 * 0.75 * 0.75 * 0.5
    expected = table_statistics(subset)
    assert results["subset"]["statistics"] == pytest.approx(vars(expected))
    assert results["lvd_f"]["statistics"] == pytest.approx(vars(table_statistics(lvd_f.table)))
    assert results["source_table"] == str(table_dir) and results["engine"] == "memory"
    assert results["score_models"] == {"clip_score": ["open_clip ViT-S-32 weights=random"]}
    assert results["notes"] == ["clip_score comes from random weights (open_clip ViT-S-32 weights=random): it ranks "
                                "nothing, so LVD-F's rule on it removes clips at random"]
    assert "| flow_remove_50pct | `arms/flow_remove_50pct.parquet` | 50 % |" in (run_dir / "results.md").read_text()


def test_the_streaming_engine_writes_the_same_files(table_dir, built, tmp_path):
    run_dir, _ = built
    build(table_dir, tmp_path, "ablation.subset.engine=streaming", "ablation.subset.batch_rows=128")
    for name in ("subset.parquet", "lvd_f.parquet", *(f"arms/flow_remove_{p}pct.parquet" for p in ("0", "12_5"))):
        assert pq.read_table(tmp_path / name).equals(pq.read_table(run_dir / name)), name


def test_settings_fail_before_anything_is_read(table_dir, tmp_path):
    with pytest.raises(UserError, match="ablation.criterion must be one of aesthetic, clip, ocr, flow"):
        build_arms.check(load_config("build_arms", overrides=["ablation.criterion=captions"]))
    with pytest.raises(UserError, match="exactly one of ablation.subset.size or ablation.subset.fraction"):
        build_arms.check(load_config("build_arms", overrides=["ablation.subset.size=5"]))
    with pytest.raises(UserError, match="ablation.clip_table"):
        build(tmp_path / "missing", tmp_path / "run")
