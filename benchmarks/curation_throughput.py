"""Curation throughput: clips/s of the CPU pipeline (cuts, flow, OCR, classic aesthetics) against decoding alone.

Sources are synthetic videos of a realistic size (default 1280x720, 10 to 30 s, made once and cached). In one run,
on the same videos and in one process, it times
  1. decode only: PyAV decodes every frame (no conversion), the floor any pipeline pays;
  2. the pipeline: `VideoCurator.curate` with CLIP off (probe, decode at the analysis size, cascaded cuts,
     key frames at full size, Farneback flow, PP-OCR DB text area, classic aesthetics),
and prints seconds per stage and the ratio pipeline / decode-only (target: at most 3), in wall time and in CPU time
(this process, all threads: on a machine other work shares, the CPU ratio moves less than the wall one). OCR runs in
a thread while the full-size frames decode, so stage seconds add up to more than the pipeline's. The OCR side it runs at
(the paper profile's 416 by default) is checked for accuracy on the same frame size: `--accuracy-scenes` synthetic
scenes (most with a text overlay) are rendered at the source size and the text area found at that side is ranked
against the true one (Spearman, and the same at PP-OCR's 736 for reference).

    python benchmarks/curation_throughput.py [--videos 3] [--width 1280 --height 720] [--ocr-side 416]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import av
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_svd.config import load_config  # noqa: E402
from lightning_svd.curation.engines import limit_threads  # noqa: E402
from lightning_svd.curation.ocr import PpOcrDbDetector, TextAreaScorer  # noqa: E402
from lightning_svd.curation.pipeline import VideoCurator  # noqa: E402
from lightning_svd.curation.quality import spearman  # noqa: E402
from lightning_svd.synthetic import CorpusSpec, corpus_videos, ensure_corpus  # noqa: E402
from lightning_svd.synthetic.corpus import plan_video  # noqa: E402
from lightning_svd.synthetic.scenes import SceneRenderer  # noqa: E402


def decode_only(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def ocr_accuracy(count: int, width: int, height: int, side: int, threads: int) -> dict[str, dict]:
    """Text area found at `side` (and at 736) on `count` rendered scenes of the source size, against the truth."""
    spec = CorpusSpec(width=width, height=height, text_fraction=0.6, seed=0)
    scenes = [scene for index in range(count) for scene in plan_video(spec, index)[0]][:count]
    frames = [SceneRenderer(scene, width, height).render(5) for scene in scenes]
    truth = [scene.text_area for scene in scenes]
    results = {}
    for limit in sorted({side, 736}):
        detector = TextAreaScorer(PpOcrDbDetector(limit_side_len=limit, threads=threads))
        begin = time.perf_counter()
        found = [detector.frame_area(frame) for frame in frames]
        results[str(limit)] = {
            "spearman": round(spearman(found, truth), 4),
            "with_text": sum(t > 0 for t in truth),
            "missed": sum(t > 0 and f == 0 for f, t in zip(found, truth)),
            "false_on_no_text": sum(t == 0 and f > 0 for f, t in zip(found, truth)),
            "seconds_per_frame": round((time.perf_counter() - begin) / len(frames), 3),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--ocr-side", type=int, default=416,
                        help="PP-OCR short side, a multiple of 32 (416: the paper profile; 736: PP-OCR's default)")
    parser.add_argument("--accuracy-scenes", type=int, default=45, help="0 skips the OCR accuracy check")
    parser.add_argument("--analysis-side", type=int, default=144)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV / ONNX Runtime threads")
    parser.add_argument("--cache", default="~/.cache/lightning_svd")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()

    spec = CorpusSpec(num_videos=args.videos, width=args.width, height=args.height, min_seconds=args.min_seconds,
                      max_seconds=args.max_seconds, seed=1)
    started = time.perf_counter()
    root = ensure_corpus(spec, Path(args.cache).expanduser())
    print(f"sources: {root} ({time.perf_counter() - started:.1f} s to make or find)")
    videos = corpus_videos(root)

    cfg = OmegaConf.to_container(load_config("curate", "tiny").curation, resolve=True)
    cfg["clip"]["enabled"] = False
    cfg["decode"]["analysis_short_side"] = args.analysis_side
    cfg["ocr"]["ppocr_db"]["limit_side_len"] = args.ocr_side
    limit_threads(args.threads, torch_too=False)
    curator = VideoCurator(cfg, threads=args.threads)
    curator.curate(str(videos[0]))  # warm-up: ONNX session, imports

    frames, decode_seconds, cpu = 0, 0.0, time.process_time()
    for video in videos:
        begin = time.perf_counter()
        frames += decode_only(video)
        decode_seconds += time.perf_counter() - begin
    decode_cpu, cpu = time.process_time() - cpu, time.process_time()
    clips, pipeline_seconds, stages = 0, 0.0, {}
    for video in videos:
        begin = time.perf_counter()
        result = curator.curate(str(video))
        pipeline_seconds += time.perf_counter() - begin
        if result.error:
            raise SystemExit(f"{video}: {result.error}")
        clips += len(result.rows)
        for stage, value in result.seconds.items():
            stages[stage] = stages.get(stage, 0.0) + value

    pipeline_cpu = time.process_time() - cpu
    seconds_of_video = frames / spec.fps
    numbers = {
        "videos": len(videos), "size": f"{args.width}x{args.height}", "frames": frames,
        "video_seconds": round(seconds_of_video, 1), "clips": clips, "ocr_short_side": args.ocr_side,
        "analysis_short_side": args.analysis_side, "threads": args.threads,
        "decode_only_s": round(decode_seconds, 2), "pipeline_s": round(pipeline_seconds, 2),
        "ratio": round(pipeline_seconds / decode_seconds, 2),
        "decode_only_cpu_s": round(decode_cpu, 2), "pipeline_cpu_s": round(pipeline_cpu, 2),
        "cpu_ratio": round(pipeline_cpu / decode_cpu, 2),
        "decode_only_fps": round(frames / decode_seconds, 1),
        "pipeline_clips_per_s": round(clips / pipeline_seconds, 3),
        "pipeline_video_seconds_per_s": round(seconds_of_video / pipeline_seconds, 2),
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
    }
    print("\n| measure | value |\n|---|---|")
    for key, value in numbers.items():
        if key != "stage_seconds":
            print(f"| {key} | {value} |")
    print("\n| stage | seconds | share of pipeline |\n|---|---|---|")
    for stage, value in stages.items():
        print(f"| {stage} | {value:.2f} | {100 * value / pipeline_seconds:.0f} % |")
    if args.accuracy_scenes:
        numbers["ocr_accuracy"] = ocr_accuracy(args.accuracy_scenes, args.width, args.height, args.ocr_side,
                                               args.threads)
        print("\n| OCR short side | Spearman vs true text area | scenes with text missed | seconds per frame |")
        print("|---|---|---|---|")
        for side, row in numbers["ocr_accuracy"].items():
            missed = f"{row['missed']} of {row['with_text']}"
            print(f"| {side} | {row['spearman']} | {missed} | {row['seconds_per_frame']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
