"""Precomputed shards: what they hold equals online encoding, buckets keep shapes apart, ranks take disjoint samples,
and a run resumed mid-epoch from shards ends with the uninterrupted run's weights."""

import json

import lightning as L
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from litdata import StreamingDataset

from data_modules.clips import ClipDataModule
from data_modules.corpus_table import corpus_clip_rows
from data_modules.shards import BucketBatchSampler, ShardDataModule
from lightning_svd import training
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.models.conditioners import OpenCLIPTextEncoder
from lightning_svd.run_context import create_run
from lightning_svd.tasks import precompute

SMALL = ["train.height=16", "train.width=16", "train.num_frames=2"]
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "callbacks.samples.enabled=false",
         "callbacks.hparams.enabled=false"]


@pytest.fixture(scope="module")
def table(small_corpus, tmp_path_factory):
    """The small corpus' clips, every other one cut to 3 frames (only 2-frame buckets fit those)."""
    rows = corpus_clip_rows(small_corpus)
    for row in rows[::2]:
        row["end_frame"] = row["start_frame"] + 3
    path = tmp_path_factory.mktemp("table") / "clips.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def run_precompute(run_dir, table, experiment: str, *overrides: str, stage=()) -> dict:
    cfg = load_config("precompute", "tiny", [f"run_dir={run_dir}", f"precompute.experiment={experiment}", *overrides])
    cfg.precompute.overrides = [*SMALL, f"train.data.table={table}", *stage]
    precompute.check(cfg)
    ctx = create_run(cfg)
    try:
        precompute.run(cfg, ctx)
    finally:
        ctx.close()
    return json.loads((run_dir / "shards" / "manifest.json").read_text())


def stage_of(manifest: dict, table):
    """The stage exactly as precompute (and a training run) builds it."""
    cfg = load_config(manifest["experiment"], "tiny", [*manifest["overrides"], f"seed={manifest['seed']}"])
    L.seed_everything(manifest["seed"], verbose=False)
    buckets = training.motion_buckets(cfg, table, None)
    return training.build_stage(cfg, buckets), buckets


def stored_samples(manifest: dict, shards):
    for bucket in manifest["buckets"]:
        for part in bucket["parts"]:
            dataset = StreamingDataset(str(shards / part))
            for index in range(len(dataset)):
                yield bucket, dataset[index]


def online_window(table, bucket: dict, buckets, strides, clip_id: str, seed: int) -> dict:
    online = ClipDataModule(table, bucket["num_frames"], bucket["height"], bucket["width"], buckets, strides=strides)
    online.setup()
    index = next(i for i in range(len(online.dataset)) if online.dataset.row(i)["clip_id"] == clip_id)
    return online.dataset[(index, seed)]


@pytest.fixture(scope="module")
def text_shards(table, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("t2v")
    return run_dir, run_precompute(run_dir, table, "pretrain_video")


def test_text_stage_shards_hold_the_online_latents_and_caption_embeddings(table, text_shards):
    run_dir, manifest = text_shards
    stage, buckets = stage_of(manifest, table)
    assert manifest["encoders"] == training.encoder_digests(stage)
    text = stage.precomputable()["txt_embedding"]
    samples = list(stored_samples(manifest, run_dir / "shards"))
    assert len(samples) == manifest["buckets"][0]["samples"] > 0
    for bucket, stored in samples[:4]:
        item = online_window(table, bucket, buckets, manifest["strides"], stored["clip_id"], stored["sample_seed"])
        assert torch.allclose(stored["latent_mean"], stage.encode_frames(item["video"][None]), atol=1e-6)
        assert not stored["latent_std"].any()  # the space-to-depth stand-in is deterministic
        assert stored["fps_id"] == pytest.approx(float(item["fps_id"]))
        for column, caption in stored["captions"].items():
            expected = text([caption])[0]
            assert torch.allclose(stored["txt_embedding"][column], expected, atol=1e-5), column


def test_image_stage_shards_hold_posterior_moments_and_clip_embedding_in_unmixed_buckets(table, tmp_path):
    manifest = run_precompute(tmp_path, table, "i2v", "precompute.buckets=[[16,16,2],[16,24,4]]",
                              stage=["train.autoencoder.kind=kl", "train.autoencoder.preset=tiny"])
    assert [b["name"] for b in manifest["buckets"]] == ["16x16x2", "16x24x4"]
    assert all(b["samples"] > 0 for b in manifest["buckets"])
    stage, buckets = stage_of(manifest, table)
    assert manifest["encoders"] == training.encoder_digests(stage)
    autoencoder, clip = stage.autoencoder, stage.precomputable()["image_embedding"]
    for bucket, stored in [s for n, s in enumerate(stored_samples(manifest, tmp_path / "shards")) if n % 4 == 0]:
        item = online_window(table, bucket, buckets, manifest["strides"], stored["clip_id"], stored["sample_seed"])
        posterior = autoencoder.encode(item["video"])
        scale = autoencoder.scale_factor
        assert torch.allclose(stored["latent_mean"], posterior.mean * scale, atol=1e-5)
        assert torch.allclose(stored["latent_std"], posterior.std * scale, atol=1e-5)
        assert torch.equal(stored["first_frame"], item["video"][0])
        assert torch.allclose(stored["image_embedding"], clip(item["video"][:1])[0], atol=1e-5)
        assert "captions" not in stored  # the image-to-video stage takes no text
    data = ShardDataModule(tmp_path, buckets, batch_size=2, seed=1)
    shapes = [tuple(batch["latent_mean"].shape[1:]) for batch in data.train_dataloader()]
    assert len(set(shapes)) == 2 and len(shapes) == len(data.sampler)  # every batch from one bucket, both seen


def test_bucket_batches_are_seeded_per_epoch_and_ranks_take_disjoint_shares():
    buckets = [range(0, 11), range(11, 18)]

    def batches(rank, world, epoch, done=None):
        sampler = BucketBatchSampler(buckets, 3, seed=5, rank=rank, world_size=world, batches_done=done)
        sampler.set_epoch(epoch)
        return [[index for index, _ in batch] for batch in sampler]

    for epoch in range(3):
        ranks = [batches(rank, 2, epoch) for rank in range(2)]
        assert len(ranks[0]) == len(ranks[1]) == 2  # 3 + 2 full batches, split evenly
        flat = [index for rank in ranks for batch in rank for index in batch]
        assert len(flat) == len(set(flat))
        assert all(len({index in buckets[0] for index in batch}) == 1 for rank in ranks for batch in rank)
        assert batches(0, 2, epoch) == ranks[0]
        assert batches(0, 1, epoch, done=lambda: 2) == batches(0, 1, epoch)[2:]
    assert batches(0, 1, 0) != batches(0, 1, 1)


class Crash(RuntimeError):
    pass


class CrashAt(L.Callback):
    """Crash the run when it reaches `step`, after that step's checkpoint: nothing else is saved."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Crash


def train_from(shards, run_dir, *overrides: str, callbacks=()) -> dict:
    """pretrain_video from the shards for 4 steps: 16 samples in batches of 4, one epoch."""
    cfg = load_config("pretrain_video", "tiny", [*SMALL, *QUIET, f"train.data.shards={shards}", f"run_dir={run_dir}",
                                                 "train.data.batch_size=4", "trainer.max_steps=4", *overrides])
    with create_run(cfg) as ctx:
        return training.train(cfg, ctx, callbacks)


def final_weights(run_dir) -> dict:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return {**checkpoint["state_dict"], **{f"ema.{k}": v for k, v in checkpoint["ema"]["shadow"].items()}}


@pytest.mark.slow
def test_run_resumed_mid_epoch_from_shards_matches_uninterrupted(text_shards, tmp_path):
    shards, manifest = text_shards
    assert manifest["buckets"][0]["samples"] == 16
    train_from(shards, tmp_path / "straight")
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Crash):
        train_from(shards, interrupted, "train.checkpoint_every_n_steps=2", callbacks=[CrashAt(2)])
    assert torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    resumed = train_from(shards, interrupted)
    assert resumed["resumed_from"] and resumed["steps"] == 4
    expected, got = final_weights(tmp_path / "straight"), final_weights(interrupted)
    changed = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert expected.keys() == got.keys() and not changed, changed[:5]


def test_shards_of_other_encoders_are_refused(text_shards, tmp_path, monkeypatch):
    shards, _ = text_shards
    monkeypatch.setattr(OpenCLIPTextEncoder, "RANDOM_TOWER_SEED", 1)  # another random tower: other encoder weights
    with pytest.raises(UserError, match="txt_embedding from other encoder weights"):
        train_from(shards, tmp_path / "other")
