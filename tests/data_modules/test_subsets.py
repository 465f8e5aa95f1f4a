"""The random subset of a table on disk: the streaming and Ray engines draw exactly the in-memory subset."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_modules import subsets
from data_modules.arms import random_subset, subset_key
from data_modules.subsets import SubsetSpec, draw_subset
from lightning_svd.clip_table import ClipTable, read_clip_table
from lightning_svd.errors import UserError

BATCH = 256
COLUMNS = ["video_path", "aesthetic_score", "caption_vblip"]


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    """2,460 rows (60 errors) in 6 parts, about ten batches: relative video paths, a caption column that one part
    stores as all-null, and the clip first in the seed's order listed again at the end (another video)."""
    rng = np.random.default_rng(0)
    ok = [i % 41 != 0 for i in range(2460)]
    ids = [f"clip{i:05d}" for i in range(2460)]
    twin = min((c for c, good in zip(ids, ok) if good), key=lambda c: subset_key(3, c))
    folder = tmp_path_factory.mktemp("clip_table")
    for index, part in enumerate(np.array_split(np.arange(2460), 6)):
        extra = index == 5
        rows = {"clip_id": [ids[i] for i in part] + [twin] * extra,
                "video_path": [f"videos/v{i % 97}.mp4" for i in part] + ["videos/twin.mp4"] * extra,
                "status": ["ok" if ok[i] else "error" for i in part] + ["ok"] * extra}
        count = len(rows["clip_id"])
        rows["aesthetic_score"] = rng.uniform(0, 10, count)
        rows["caption_vblip"] = [None] * count if index == 0 else [f"caption {i}" for i in range(count)]
        pq.write_table(pa.table(rows), folder / f"part-{index:05d}.parquet")
    return folder


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def pairs(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table["clip_id"].to_pylist(), table["video_path"].to_pylist()))


@pytest.mark.parametrize("amount", [{"size": 700}, {"fraction": 0.5}])
def test_streaming_and_ray_subsets_equal_the_in_memory_one(table_dir, local_ray, amount):
    source = ClipTable(table_dir)
    memory = draw_subset(source, COLUMNS, SubsetSpec(3, **amount))
    members = random_subset(read_clip_table(table_dir), 3, **amount)
    assert sorted(pairs(memory)) == sorted(pairs(members))
    for engine in ("streaming", "ray"):
        drawn = draw_subset(source, COLUMNS, SubsetSpec(3, **amount, engine=engine, batch_rows=BATCH))
        assert drawn.equals(memory), engine


def test_a_clip_id_listed_twice_goes_to_its_first_row_on_every_engine(table_dir, local_ray):
    """Both rows share the smallest key: a subset of one takes the row listed first, a larger one both."""
    source = ClipTable(table_dir)
    for engine in subsets.ENGINES:
        one = draw_subset(source, COLUMNS, SubsetSpec(3, size=1, engine=engine, batch_rows=BATCH))
        assert one["video_path"].to_pylist() == [str(table_dir / "videos" / "v54.mp4")], engine
        five = draw_subset(source, COLUMNS, SubsetSpec(3, size=5, engine=engine, batch_rows=BATCH))
        assert five["video_path"][4].as_py() == str(table_dir / "videos" / "twin.mp4"), engine


def test_streaming_holds_the_subset_and_a_batch_not_the_table(table_dir, monkeypatch):
    held = []
    original = subsets.Candidates.add

    def add(self, table, keys):
        original(self, table, keys)
        held.append(self.rows)

    monkeypatch.setattr(subsets.Candidates, "add", add)
    draw_subset(ClipTable(table_dir), COLUMNS, SubsetSpec(3, size=300, engine="streaming", batch_rows=BATCH))
    assert len(held) >= 9 and max(held) <= 300 + max(150, BATCH) + BATCH


def test_subset_settings_fail_in_one_line(table_dir):
    with pytest.raises(UserError, match="exactly one of ablation.subset.size or ablation.subset.fraction"):
        SubsetSpec(0, size=5, fraction=0.5)
    with pytest.raises(UserError, match="unknown ablation.subset.engine 'spark'; valid: memory, streaming, ray"):
        SubsetSpec(0, size=5, engine="spark")
    with pytest.raises(UserError, match="size must be at least 1"):
        SubsetSpec(0, size=0)
    with pytest.raises(UserError, match="subset of 5000 clips asked from a table of 2401 ok clips"):
        draw_subset(ClipTable(table_dir), COLUMNS, SubsetSpec(0, size=5000, engine="streaming", batch_rows=BATCH))
    with pytest.raises(UserError, match=r"lacks columns \['clip_score'\]"):
        draw_subset(ClipTable(table_dir), ["clip_score"], SubsetSpec(0, size=5))
