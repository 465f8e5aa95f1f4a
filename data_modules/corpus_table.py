"""A clip table from the synthetic corpus' ground truth: its scenes as clips, their planted speed as flow.

The tiny profile trains on this table when no curated table is given (`train.data.table: null`), so the
training stages run before and independently of curation; it follows the clip-table contract of SPEC.md.
"""

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lightning_svd.synthetic import corpus_videos, load_truth

# What the motion-bucket map of a model trained on this table was calibrated on (see MotionBuckets.flow_method)
GROUND_TRUTH_FLOW = "synthetic ground truth: the scene's planted pan speed, px per frame at the corpus size"


def corpus_clip_rows(root: str | Path) -> list[dict]:
    rows = []
    for video in corpus_videos(root):
        truth = load_truth(video)
        for scene in truth["scenes"]:
            span = f"{video.name}:{scene['start_frame']}-{scene['end_frame']}"
            rows.append({
                "clip_id": hashlib.sha1(span.encode()).hexdigest()[:16],
                "video_path": str(video),
                "start_frame": int(scene["start_frame"]),
                "end_frame": int(scene["end_frame"]),
                "fps": float(truth["fps"]),
                "width": int(truth["width"]),
                "height": int(truth["height"]),
                "num_frames": int(scene["end_frame"] - scene["start_frame"]),
                "caption_coca": scene["caption"],
                "caption_vblip": None,
                "caption_llm": None,
                "flow_score": 0.0 if scene["motion"] == "static" else float(scene["speed"]),
                "flow_score_model": GROUND_TRUTH_FLOW,
                "camera_motion": scene["motion"],
                "status": "ok",
                "error": None,
            })
    return rows


def write_corpus_clip_table(root: str | Path, path: str | Path) -> Path:
    """Write the ground-truth clip table of the corpus at `root` to a Parquet file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(corpus_clip_rows(root)), path)
    return path
