"""A model's motion_bucket_id map records which flow method calibrated it; a stage that keeps a map calibrated on
another method than its table's says so, once."""

import logging

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from data_modules.corpus_table import GROUND_TRUTH_FLOW, corpus_clip_rows
from data_modules.motion_buckets import MotionBuckets
from lightning_svd import training
from lightning_svd.curation.motion import CompensatedFarneback, PaperFarneback

PAPER, COMPENSATED = PaperFarneback().describe(), CompensatedFarneback().describe()
LOG = logging.getLogger("test_motion_bucket_flow")


def write_table(path, flow_model: str, scores=(0.0, 1.0, 2.0, 4.0)):
    rows = [{"clip_id": f"c{i}", "video_path": "v.mp4", "start_frame": 0, "end_frame": 24, "fps": 24.0,
             "status": "ok", "flow_score": score, "flow_score_model": flow_model, "flow_score_config": "abc123"}
            for i, score in enumerate(scores)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_a_calibrated_map_records_the_tables_flow_method(tmp_path, small_corpus):
    buckets = training.motion_buckets(OmegaConf.create({"init_from": None}),
                                      write_table(tmp_path / "paper.parquet", PAPER), LOG)
    assert (buckets.flow_method, buckets.flow_config) == (PAPER, "abc123")
    assert buckets.to_dict()["flow_method"] == PAPER and MotionBuckets.from_dict(buckets.to_dict()) == buckets
    assert MotionBuckets.from_dict({"flow_values": [0.0, 1.0], "probabilities": [0.0, 1.0]}).flow_method is None
    truth = tmp_path / "truth.parquet"
    pq.write_table(pa.Table.from_pylist(corpus_clip_rows(small_corpus)), truth)
    assert training.motion_buckets(OmegaConf.create({"init_from": None}), truth, LOG).flow_method == \
        GROUND_TRUTH_FLOW


def test_a_kept_map_of_another_flow_method_warns_in_one_line(tmp_path, monkeypatch, caplog):
    parent = MotionBuckets.calibrate([0.0, 1.0, 3.0], flow_method=PAPER, flow_config="abc123")
    monkeypatch.setattr(training, "stored_motion_buckets", lambda path: parent.to_dict())
    cfg = OmegaConf.create({"init_from": "parent.ckpt",
                            "train": {"micro_conditioning": {"keys": ["fps_id", "motion_bucket_id"]}}})
    unconditioned = OmegaConf.create({"init_from": "parent.ckpt", "train": {"micro_conditioning": {"keys": []}}})
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert training.motion_buckets(cfg, write_table(tmp_path / "same.parquet", PAPER), LOG) == parent
        assert training.motion_buckets(unconditioned, write_table(tmp_path / "proxy.parquet", COMPENSATED), LOG)
        assert not caplog.records
        kept = training.motion_buckets(cfg, write_table(tmp_path / "other.parquet", COMPENSATED), LOG)
    assert kept == parent
    [record] = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING and "\n" not in message
    assert PAPER in message and COMPENSATED in message
