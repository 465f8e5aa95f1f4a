"""The clip DataModule: table contract, frame sampling and fps, resize/crop, captions, seeding, DDP shares."""

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from data_modules import clips
from data_modules.clips import (
    CaptionSampler,
    ClipDataModule,
    ImageDataModule,
    SeededSampler,
    read_clips,
    resize_and_crop,
)
from data_modules.corpus_table import corpus_clip_rows
from data_modules.motion_buckets import MotionBuckets
from lightning_svd.errors import UserError


@pytest.fixture(scope="module")
def table(small_corpus, tmp_path_factory):
    rows = corpus_clip_rows(small_corpus)
    broken = dict(rows[0], clip_id="broken", status="error", error="decode failed")
    path = tmp_path_factory.mktemp("clips") / "clips.parquet"
    pq.write_table(pa.Table.from_pylist([*rows, broken]), path)
    return path, rows


def module(path, rows, **kwargs):
    buckets = MotionBuckets.calibrate([r["flow_score"] for r in rows])
    options = {"num_frames": 4, "height": 24, "width": 40, "motion_buckets": buckets, "strides": [2], "seed": 3}
    data = ClipDataModule(path, **{**options, **kwargs})
    data.setup()
    return data


def test_rows_with_errors_are_skipped_and_missing_columns_named(table, tmp_path):
    path, rows = table
    loaded = read_clips(path)
    assert loaded.num_rows == len(rows) and "broken" not in loaded["clip_id"].to_pylist()
    pq.write_table(pa.Table.from_pylist([{"clip_id": "x", "status": "ok"}]), tmp_path / "bad.parquet")
    with pytest.raises(UserError, match="lacks columns"):
        read_clips(tmp_path / "bad.parquet")
    with pytest.raises(UserError, match="clip table not found: .*; set train.data.table to a Parquet file"):
        read_clips(tmp_path / "missing.parquet")


def test_sample_has_t_frames_at_the_stride_and_reports_effective_fps(table):
    path, rows = table
    data = module(path, rows)
    sample = data.dataset[(0, 11)]
    assert sample["video"].shape == (4, 3, 24, 40) and sample["video"].dtype == torch.float32
    assert sample["video"].min() >= -1.0 and sample["video"].max() <= 1.0
    assert sample["fps_id"].item() == pytest.approx(rows[0]["fps"] / 2 - 1)
    assert 0 <= sample["motion_bucket_id"].item() <= 255
    assert sample["txt"] == rows[0]["caption_coca"]
    again = data.dataset[(0, 11)]
    assert torch.equal(sample["video"], again["video"])


def test_cached_clips_give_the_decoded_frames_and_decode_each_clip_once(table, monkeypatch):
    path, rows = table
    decoded = [module(path, rows, strides=[1, 2]).dataset[(i, seed)] for i in range(3) for seed in range(4)]
    cached = module(path, rows, strides=[1, 2], cache_clips=True)
    calls = []
    real_read = clips.read_frames
    monkeypatch.setattr(clips, "read_frames", lambda *args: calls.append(args) or real_read(*args))
    for expected, (i, seed) in zip(decoded, [(i, seed) for i in range(3) for seed in range(4)]):
        assert torch.allclose(cached.dataset[(i, seed)]["video"], expected["video"], atol=1e-6)
    assert len(calls) == 3


def test_frames_follow_the_planted_motion(table):
    """Consecutive sampled frames of a moving clip differ; of a static one they hardly do."""
    path, rows = table
    data = module(path, rows)
    by_motion = {}
    for index, motion in enumerate(data.dataset.table["camera_motion"].to_pylist()):
        by_motion.setdefault(motion, index)
    change = {m: (data.dataset[(i, 0)]["video"].diff(dim=0).abs().mean()).item() for m, i in by_motion.items()}
    assert change["pan"] > 3 * change["static"]


def test_resize_is_antialiased_cover_then_centre_crop():
    frame = np.zeros((1, 60, 100, 3), dtype=np.uint8)
    frame[:, :, 50:] = 255
    out = resize_and_crop(frame, 30, 30)
    assert out.shape == (1, 3, 30, 30)
    assert out[0, 0, 0, 0] == -1.0 and out[0, 0, 0, -1] == 1.0
    assert -1.0 < out[0, 0, 0, 15] < 1.0   # the edge is filtered, not aliased


def test_captions_follow_the_probabilities_renormalised_over_present_ones():
    sampler = CaptionSampler({"coca": 0.5, "vblip": 0.25, "llm": 0.25})
    rng = np.random.default_rng(0)
    row = {"caption_coca": "c", "caption_vblip": "v", "caption_llm": "l"}
    counts = Counter(sampler(row, rng) for _ in range(4000))
    assert counts["c"] / 4000 == pytest.approx(0.5, abs=0.03) and counts["l"] / 4000 == pytest.approx(0.25, abs=0.03)
    counts = Counter(sampler({**row, "caption_vblip": None}, rng) for _ in range(3000))
    assert counts["c"] / 3000 == pytest.approx(2 / 3, abs=0.03) and "v" not in counts


def test_ranks_draw_disjoint_shares_of_one_permutation_per_epoch():
    shares = [list(SeededSampler(10, seed=1, rank=r, world_size=2)) for r in range(2)]
    indices = [i for share in shares for i, _ in share]
    assert sorted(indices) == list(range(10))
    sampler = SeededSampler(10, seed=1)
    first = [i for i, _ in sampler]
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != first
    assert len({seed for _, seed in sampler}) == 10


def test_resumed_epoch_skips_consumed_samples():
    full = list(SeededSampler(10, seed=1))
    assert list(SeededSampler(10, seed=1, samples_done=lambda: 4)) == full[4:]


def test_dataloader_batches_and_image_module(table):
    path, rows = table
    batch = next(iter(module(path, rows, batch_size=2).train_dataloader()))
    assert batch["video"].shape == (2, 4, 3, 24, 40) and len(batch["txt"]) == 2
    assert batch["fps_id"].dtype == torch.float32
    images = ImageDataModule(path, 24, 40, MotionBuckets([0.0, 1.0], [0.0, 1.0]), batch_size=2)
    images.setup()
    assert images.dataset[(0, 1)]["video"].shape == (1, 3, 24, 40)


def test_camera_motion_filter(table):
    path, rows = table
    data = module(path, rows, camera_motion="static")
    assert set(data.dataset.table["camera_motion"].to_pylist()) == {"static"}
    with pytest.raises(UserError, match="camera_motion='zoom'"):
        module(path, rows, camera_motion="zoom")


def test_camera_direction_filter_keeps_the_papers_horizontal_pans(table, tmp_path):
    """The paper's pan LoRA learns horizontally moving clips: tilts (up / down) are left out."""
    path, rows = table
    with pytest.raises(UserError, match="no clip with a camera_direction"):
        module(path, rows, camera_directions=["left", "right"])
    directions = ["left", "up", "right", "down"]
    labelled = [dict(row, camera_motion="pan", camera_direction=directions[i % 4]) for i, row in enumerate(rows)]
    pq.write_table(pa.Table.from_pylist(labelled), tmp_path / "labelled.parquet")
    data = module(tmp_path / "labelled.parquet", labelled, camera_motion="pan", camera_directions=["left", "right"])
    kept = data.dataset.table["camera_direction"].to_pylist()
    assert set(kept) == {"left", "right"} and len(kept) == sum(i % 4 in (0, 2) for i in range(len(rows)))


def test_motion_buckets_map_flow_percentiles_to_0_255():
    buckets = MotionBuckets.calibrate(np.linspace(0.0, 10.0, 101))
    assert buckets(0.0) == 0 and buckets(10.0) == 255 and buckets(5.0) == 128
    assert buckets(-3.0) == 0 and buckets(99.0) == 255 and buckets(None) == 127
    values = [buckets(f) for f in np.linspace(0, 10, 50)]
    assert values == sorted(values)
    assert MotionBuckets.from_dict(buckets.to_dict()) == buckets
    static_heavy = MotionBuckets.calibrate([0.0] * 60 + list(np.linspace(1, 2, 40)))
    assert 0 < static_heavy(0.0) < static_heavy(1.5) < 255
    with pytest.raises(ValueError, match="no finite flow_score"):
        MotionBuckets.calibrate([None, float("nan")])


def test_a_dataset_that_comes_captioned_trains_on_its_sidecar_captions():
    sampler = CaptionSampler({"coca": 0.5, "vblip": 0.25, "llm": 0.25, "sidecar": 0.5})
    rng = np.random.default_rng(0)
    row = {"caption_coca": None, "caption_vblip": None, "caption_llm": None, "caption_sidecar": "s"}
    assert {sampler(row, rng) for _ in range(50)} == {"s"}
    with pytest.raises(UserError, match="sidecar"):
        CaptionSampler({"blip": 1.0})


def test_a_table_smaller_than_one_batch_is_an_error_not_zero_steps(table, tmp_path):
    _, rows = table
    three = tmp_path / "three.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:3]), three)
    with pytest.raises(UserError, match="3 clips, fewer than a batch of 4"):
        module(three, rows, batch_size=4).train_dataloader()
