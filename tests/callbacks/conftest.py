"""Callback tests: one tiny training run with every callback on, shared by the tests of this folder."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_modules.corpus_table import corpus_clip_rows
from lightning_svd.config import load_config
from lightning_svd.run_context import create_run

CALLBACKS_ON = [
    "callbacks.fvd.enabled=true", "callbacks.fvd.every_n_steps=2", "callbacks.fvd.num_clips=3",
    "callbacks.fvd.batch_size=3", "callbacks.fvd.steps=2", "callbacks.fvd.extractor.random.size=16",
    "callbacks.samples.enabled=true", "callbacks.samples.every_n_steps=2", "callbacks.samples.steps=2",
    "callbacks.preference.enabled=true", "callbacks.preference.steps=2", "callbacks.preference.every_n_steps=2",
    "callbacks.preference.arm=tiny_arm",
    "callbacks.preference.prompts=[a red circle,two blue squares]", "callbacks.hparams.enabled=true",
]
FAST = ["train.height=16", "train.width=16", "train.num_frames=2", "train.data.batch_size=1",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.max_steps=3"]


@pytest.fixture(scope="session")
def callback_table(small_corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "clips.parquet"
    pq.write_table(pa.Table.from_pylist(corpus_clip_rows(small_corpus)), path)
    return path


@pytest.fixture(scope="session")
def callback_run(callback_table, tmp_path_factory):
    """Three steps of the tiny text-to-video stage: FVD and samples at step 2, again at the end (step 3)."""
    from lightning_svd.tasks import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_config("pretrain_video", "tiny",
                      [*FAST, *CALLBACKS_ON, f"train.data.table={callback_table}", f"run_dir={run_dir}"])
    ctx = create_run(cfg)
    try:
        results = train.run(cfg, ctx)
    finally:
        ctx.close()
    return run_dir, results
