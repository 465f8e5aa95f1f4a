"""Camera-motion labels against the synthetic corpus' truth: the share of clips labelled right (pan, zoom, static),
with the direction too, and the confusion, per Farneback method.

The corpus is the default one with `--zoom-fraction` of its moving scenes zooming (in or out) instead of panning.
Curation runs as the tiny profile does with text, aesthetic and CLIP scoring off (they do not touch the label);
`paper` also decodes at 96 px as tiny does, so only the flow method differs.

    python benchmarks/camera_motion.py [--videos 24] [--zoom-fraction 0.4] [--seeds 0 1 2] [--methods compensated paper]
"""

import argparse
import collections
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_svd.config import load_config  # noqa: E402
from lightning_svd.curation.pipeline import VideoCurator, curate_in_process  # noqa: E402
from lightning_svd.curation.quality import covering_scene, evaluate_against_truth  # noqa: E402
from lightning_svd.synthetic import CorpusSpec, corpus_videos, ensure_corpus, load_truth  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--zoom-fraction", type=float, default=0.4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["compensated", "paper"])
    parser.add_argument("--cache", default="~/.cache/lightning_svd")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()

    base = OmegaConf.to_container(load_config("curate", "tiny").curation, resolve=True)
    base["clip"]["enabled"], base["ocr"]["backend"], base["aesthetic"]["backend"] = False, "none", "none"
    results = []
    print("| seed | flow method | clips | label right | label and direction right | wrong (truth -> label) |")
    print("|---|---|---|---|---|---|")
    for seed in args.seeds:
        spec = CorpusSpec(num_videos=args.videos, zoom_fraction=args.zoom_fraction, seed=seed)
        corpus = ensure_corpus(spec, Path(args.cache).expanduser(), progress=False)
        for method in args.methods:
            cfg = {**base, "flow": {**base["flow"], "farneback": {**base["flow"]["farneback"], "method": method}}}
            videos = corpus_videos(corpus)
            rows, cuts = curate_in_process(VideoCurator(cfg), videos)
            truths = {str(video): load_truth(video) for video in videos}
            report = evaluate_against_truth(rows, cuts, truths)
            wrong = collections.Counter(
                f"{scene['motion']} -> {row['camera_motion']}" for row in rows
                if (scene := covering_scene(truths[row["video_path"]], row["start_frame"], row["end_frame"]))["motion"]
                != row["camera_motion"])
            results.append({"seed": seed, "method": method, "clips": report["camera_clips"],
                            "accuracy": report["camera_accuracy"],
                            "direction_accuracy": report["camera_direction_accuracy"], "wrong": dict(wrong)})
            print(f"| {seed} | {method} | {report['camera_clips']} | {report['camera_accuracy']:.1%} | "
                  f"{report['camera_direction_accuracy']:.1%} | "
                  f"{', '.join(f'{k}: {v}' for k, v in sorted(wrong.items())) or '-'} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
