"""How well does each motion score rank the synthetic corpus' clips by their planted pan speed?

Curates the default corpus (24 videos; a share of its scenes degraded by noise, blur or low contrast) with the curate
experiment's tiny config, once per flow method, and prints the Spearman correlation of flow_score with the true
speed, how many static clips score above the slowest moving one, and the seconds the flow stage took.

    PYTHONPATH=. python benchmarks/flow_methods.py [--methods paper compensated raft]

`raft` is curate_hq's tiny setting: random weights, so its ranking is chance. About a minute per method on two
cores. Never run as a test.
"""

import argparse
import time

import numpy as np
from omegaconf import OmegaConf

from lightning_svd.config import load_config
from lightning_svd.curation.pipeline import VideoCurator
from lightning_svd.curation.quality import covering_scene, evaluate_against_truth
from lightning_svd.synthetic import CorpusSpec, corpus_videos, ensure_corpus, load_truth


def curation_config(method: str) -> dict:
    """The tiny curation config with only what the flow score needs (no CLIP, OCR or aesthetics)."""
    experiment = "curate_hq" if method == "raft" else "curate"
    overrides = ["curation.clip.enabled=false", "curation.ocr.backend=none", "curation.aesthetic.backend=none"]
    if method != "raft":
        overrides.append(f"curation.flow.farneback.method={method}")
    return OmegaConf.to_container(load_config(experiment, "tiny", overrides).curation, resolve=True)


def measure(method: str, videos: list) -> dict:
    curator = VideoCurator(curation_config(method))
    results = [curator.curate(str(video)) for video in videos]
    rows = [row for result in results for row in result.rows if row["status"] == "ok"]
    truths = {str(video): load_truth(video) for video in videos}
    cuts = {r.video_path: [c["frame"] for c in r.cuts] for r in results}
    speeds = [covering_scene(truths[r["video_path"]], r["start_frame"], r["end_frame"])["speed"] for r in rows]
    static = [r["flow_score"] for r, s in zip(rows, speeds) if s == 0 and r["flow_score"] is not None]
    moving = [r["flow_score"] for r, s in zip(rows, speeds) if s > 0 and r["flow_score"] is not None]
    return {"method": method, "spearman": evaluate_against_truth(rows, cuts, truths)["flow_spearman"],
            "clips": len(rows), "unscored": sum(r["flow_score"] is None for r in rows),
            "static_above_slowest_moving": int(np.sum(np.asarray(static) > min(moving))),
            "static_clips": len(static), "flow_seconds": round(sum(r.seconds.get("flow", 0.0) for r in results), 2),
            "model": rows[0]["flow_score_model"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["paper", "compensated", "raft"])
    args = parser.parse_args()
    cache = load_config("curate", "tiny").cache_dir
    videos = corpus_videos(ensure_corpus(CorpusSpec(), cache, progress=False))
    print("| method | flow Spearman vs true speed | static clips above the slowest moving one | clips (unscored) "
          "| flow stage s |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        started = time.perf_counter()
        m = measure(method, videos)
        print(f"| {m['method']} | {m['spearman']} | {m['static_above_slowest_moving']} of {m['static_clips']} | "
              f"{m['clips']} ({m['unscored']}) | {m['flow_seconds']} |  <!-- {m['model']}; "
              f"{time.perf_counter() - started:.0f} s in all -->")


if __name__ == "__main__":
    main()
