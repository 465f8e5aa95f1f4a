"""One video in, its clip-table rows out: probe, decode once, cuts, clips, captions, scores, camera motion.

Every stage is a pure function of the video and the `curation` config, so the local and Ray engines run the same
`VideoCurator.curate` and get the same rows. The video is decoded twice at most: once at the analysis size (every
frame, for the cuts and the Farneback flow) and once for the few full-size frames the frame scorers share (first,
middle and last frame of every clip for OCR, aesthetics, CLIP and CoCa; VideoBLIP's and RAFT's frames when on); text
detection runs in a second thread from each key frame's decoding to the aesthetic stage. Cuts come from the cascade or
TransNetV2 (`curation.cuts.backend`); the camera-motion label from the flow fields behind the flow score.
Frames are picked and clips measured by presentation time, so variable-frame-rate sources are ordinary input.

A video ends in one of three ways: clips (`ok` rows), no clip although it decodes (one `empty` row: a still image,
a fade, nothing as long as `curation.cuts.min_clip_s`), or one `error` row when it cannot be read.
"""

import errno
import statistics
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..clip_table import CAPTION_COLUMNS, CLIP_SOURCE_COLUMNS, EMPTY, ERROR, OK, SCORE_COLUMNS
from .aesthetic import ClassicQuality
from .caption_stage import CaptionStage
from .clips import ClipPolicy, ClipSpan, clip_id, source_name, status_id
from .cut_backends import build_cut_detector
from .motion import CameraClassifier, build_flow
from .ocr import build_ocr
from .split import SPLITTERS
from .table import config_hash, empty_row
from .video_io import (
    BadVideoError,
    VideoInfo,
    VideoLimits,
    decode_all,
    decode_at,
    frame_intervals,
    probe_video,
    scaled_size,
    span_rate,
)

# How a clip's per-caption CLIP similarities become its clip_score (`curation.clip.combine`; the paper does not say)
CLIP_COMBINATIONS = {"mean": statistics.fmean, "max": max}


def uses_torch(cfg: dict) -> bool:
    """Whether a curator built from `cfg` runs torch models (CLIP, the LAION head, RAFT, TransNetV2, captioners)."""
    captioners = any((cfg["captions"].get(name) or {}).get("enabled", False) for name in ("coca", "vblip", "llm"))
    return (bool(cfg["clip"]["enabled"]) or cfg["aesthetic"]["backend"] == "laion" or cfg["flow"]["backend"] == "raft"
            or cfg["cuts"].get("backend") == "transnetv2" or captioners)


class NoClipError(Exception):
    """A video that decodes but yields no clip; it becomes a table row with status=empty and this message."""


@dataclass
class VideoResult:
    """The rows of one video plus what the report needs (detected cuts, seconds per stage, what went wrong)."""

    video_path: str
    rows: list[dict]
    cuts: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why the video could not be read
    empty: str | None = None  # why a readable video gave no clip
    warnings: list[str] = field(default_factory=list)  # what was skipped without costing a clip (a bad sidecar)

    @property
    def status(self) -> str:
        return ERROR if self.error is not None else EMPTY if self.empty is not None else OK


class _Timer:
    def __init__(self, seconds: dict[str, float], stage: str):
        self.seconds, self.stage = seconds, stage

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + time.perf_counter() - self.start


class _TextDetection:
    """Text masks of the clips' key frames, each detected in a second thread as soon as it is decoded, so OCR runs
    while later frames decode. Once decoding is done, the curating thread takes the frames not started yet, from the
    last one back, so two threads detect until the end (ONNX Runtime releases the GIL; the detectors keep no state
    between calls). `seconds["ocr"]` adds up both threads' detection time."""

    def __init__(self, ocr, pool: ThreadPoolExecutor, seconds: dict[str, float]):
        self.ocr, self.pool, self.seconds = ocr, pool, seconds
        self.jobs: dict[int, tuple] = {}  # frame index -> (future, frame)
        self.lock = threading.Lock()

    def submit(self, index: int, frame: np.ndarray) -> None:
        self.jobs[index] = (self.pool.submit(self._detect, frame), frame)

    def _detect(self, frame: np.ndarray) -> np.ndarray:
        begin = time.perf_counter()
        mask = self.ocr.detector.text_mask(frame)
        with self.lock:
            self.seconds["ocr"] = self.seconds.get("ocr", 0.0) + time.perf_counter() - begin
        return mask

    def masks(self) -> dict[int, np.ndarray]:
        """The text mask of every submitted frame, by frame index."""
        found = {index: self._detect(frame) for index, (job, frame) in reversed(self.jobs.items()) if job.cancel()}
        return {index: found[index] if index in found else job.result() for index, (job, _) in self.jobs.items()}


class VideoCurator:
    """Built once per worker process from the `curation` config (a plain dict); `curate(path)` is pure."""

    def __init__(self, cfg: dict, threads: int = 1):
        self.cfg = cfg
        decode = cfg["decode"]
        self.limits = VideoLimits(max_frame_pixels=int(decode["max_frame_pixels"]))
        self.analysis_short_side = int(decode["analysis_short_side"])
        self.max_analysis_bytes = int(decode["max_analysis_megabytes"]) * 2**20
        self.cut_detector = build_cut_detector(cfg["cuts"])
        self.policy = ClipPolicy(float(cfg["cuts"]["min_clip_s"]), bool(cfg["cuts"]["snap_to_keyframes"]))
        self.flow = build_flow(cfg["flow"]) if cfg["flow"].get("backend", "farneback") != "none" else None
        camera = dict(cfg.get("camera") or {})
        enabled = camera.pop("enabled", True) and self.flow is not None
        self.camera = CameraClassifier(**{k: float(v) for k, v in camera.items()}) if enabled else None
        self.ocr = build_ocr(cfg["ocr"], threads=threads)
        aesthetic = cfg["aesthetic"]
        self.aesthetic_backend = aesthetic.get("backend", "classic")
        if self.aesthetic_backend not in ("classic", "laion", "none"):
            raise ValueError(
                f"curation.aesthetic.backend must be classic, laion or none, got {self.aesthetic_backend!r}")
        self.classic = ClassicQuality(**dict(aesthetic.get("classic") or {}))
        self.classic_excludes_text = (self.aesthetic_backend == "classic" and bool(aesthetic.get("exclude_text", True))
                                      and self.ocr is not None)
        self.captioners = CaptionStage(cfg["captions"])
        self.split_mode = cfg["split"]["mode"]
        if self.split_mode not in ("none", *SPLITTERS):
            raise ValueError(f"curation.split.mode must be none, copy or reencode, got {self.split_mode!r}")
        self.split_dir = Path(cfg["split"]["dir"]) if cfg["split"].get("dir") else None
        self.caption_columns = list(cfg["clip"]["caption_columns"])
        unknown = [column for column in self.caption_columns if column not in CAPTION_COLUMNS]
        if unknown:
            raise ValueError(f"curation.clip.caption_columns: unknown {unknown}; valid: {list(CAPTION_COLUMNS)}")
        self.clip_combine = cfg["clip"]["combine"]
        if self.clip_combine not in CLIP_COMBINATIONS:
            raise ValueError(f"curation.clip.combine must be one of {', '.join(CLIP_COMBINATIONS)}, "
                             f"got {self.clip_combine!r}")
        self._clip_encoder = None
        self._laion = None
        self.stage_hashes = {
            "flow_score": config_hash(cfg["flow"]),
            "ocr_area": config_hash(cfg["ocr"]),
            "aesthetic_score": config_hash(self._aesthetic_inputs()),
            "clip_score": config_hash({"clip": cfg["clip"], "captions": cfg["captions"]}),
        }
        self.camera_hash = config_hash({"flow": cfg["flow"], "camera": cfg.get("camera")})

    def _aesthetic_inputs(self) -> dict:
        """The config the aesthetic score depends on: CLIP for the LAION head, the text boxes for `exclude_text`."""
        aesthetic = self.cfg["aesthetic"]
        if self.aesthetic_backend == "laion":
            return {"aesthetic": aesthetic, "clip": self.cfg["clip"]}
        if self.classic_excludes_text:
            return {"aesthetic": aesthetic, "ocr": self.cfg["ocr"]}
        return aesthetic

    @property
    def clip_enabled(self) -> bool:
        return bool(self.cfg["clip"]["enabled"]) or self.aesthetic_backend == "laion"

    def clip_encoder(self):
        """open_clip is imported and the model built on first use (workers without CLIP never import torch)."""
        if self._clip_encoder is None:
            from .clip_scoring import ClipEncoder

            clip = self.cfg["clip"]
            self._clip_encoder = ClipEncoder(clip["model"], clip.get("weights"), clip.get("device", "cpu"),
                                             clip.get("config_file"))
        return self._clip_encoder

    def laion(self):
        if self._laion is None:
            from .clip_scoring import LaionAesthetic

            laion = self.cfg["aesthetic"].get("laion") or {}
            dim = int(self.clip_encoder().model.visual.output_dim)
            self._laion = LaionAesthetic(dim, laion.get("weights"), laion.get("head", "mlp"))
        return self._laion

    def describe_models(self) -> dict[str, str | None]:
        """What produced each score, as stored in the `<score>_model` columns."""
        classic = "classic no-reference quality 0..10 (contrast, noise, blur)"
        if self.classic_excludes_text:
            classic += f" outside {self.ocr.detector.name} text boxes"
        aesthetic = {"classic": classic, "none": None}
        return {
            "flow_score": None if self.flow is None else self.flow.describe(),
            "ocr_area": None if self.ocr is None else f"{self.ocr.detector.name} text-box area, {self.ocr.aggregate}",
            "aesthetic_score": self.laion().describe() + " on " + self.clip_encoder().describe()
            if self.aesthetic_backend == "laion" else aesthetic[self.aesthetic_backend],
            "clip_score": self.clip_encoder().describe() if self.cfg["clip"]["enabled"] else None,
        }

    def curate(self, video_path: str) -> VideoResult:
        seconds: dict[str, float] = {}
        try:
            return self._curate(video_path, seconds)
        except BadVideoError as err:
            return self._error(video_path, str(err), seconds)
        except NoClipError as err:
            return self._empty(video_path, str(err), seconds)
        except Exception as err:  # one broken video must never stop a shard; a full disk is no fault of the video,
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:  # so it stops the run (a rerun curates it)
                raise
            where = traceback.extract_tb(err.__traceback__)[-1]
            message = f"{type(err).__name__}: {err} (at {Path(where.filename).name}:{where.lineno})"
            return self._error(video_path, message, seconds)

    def _status_row(self, video_path: str, status: str, message: str) -> dict:
        return {**empty_row(), "clip_id": status_id(self.source_name(video_path), status), "video_path": video_path,
                "status": status, "error": message}

    def _error(self, video_path: str, message: str, seconds: dict[str, float]) -> VideoResult:
        return VideoResult(video_path, [self._status_row(video_path, ERROR, message)], seconds=seconds, error=message)

    def _empty(self, video_path: str, message: str, seconds: dict[str, float], cuts: list[dict] | None = None,
               warnings: list[str] | None = None) -> VideoResult:
        return VideoResult(video_path, [self._status_row(video_path, EMPTY, message)], cuts or [], seconds,
                           empty=message, warnings=warnings or [])

    def _curate(self, video_path: str, seconds: dict[str, float]) -> VideoResult:
        with _Timer(seconds, "probe"):
            info = probe_video(video_path, self.limits)
        if info.num_frames < 2:
            raise NoClipError(f"a single frame (a still image), no clip of at least curation.cuts.min_clip_s="
                              f"{self.policy.min_clip_s} s")
        width, height = scaled_size(info.width, info.height, self.analysis_short_side)
        needed = info.num_frames * width * height * 3
        if needed > self.max_analysis_bytes:
            raise BadVideoError(
                f"{info.num_frames} frames need {needed / 2**20:.0f} MiB at the analysis size; above "
                f"curation.decode.max_analysis_megabytes={self.max_analysis_bytes // 2**20} (split the source first)"
            )
        with _Timer(seconds, "decode"):
            frames = decode_all(info, self.analysis_short_side, self.cfg["decode"].get("threads", "AUTO"))
        with _Timer(seconds, "cuts"):
            cuts = self.cut_detector.detect(frames, info.times)
            spans = self.policy.spans(cuts, info.times, info.keyframes)
        cut_records = [{"frame": c.frame, "time_s": c.time_s(info.times), "start_frame": c.start_frame,
                        "end_frame": c.end_frame, "level": c.level} for c in cuts]
        if not spans:
            return self._empty(video_path, f"no clip of at least curation.cuts.min_clip_s={self.policy.min_clip_s} s "
                               f"(video {info.duration_s:.2f} s, {len(cuts)} cut(s))", seconds, cut_records)
        rows = [self._base_row(info, span) for span in spans]
        with ThreadPoolExecutor(1) as text_thread:  # text detection runs beside every stage up to the aesthetic one
            detection = _TextDetection(self.ocr, text_thread, seconds) if self.ocr is not None else None
            with _Timer(seconds, "frames"):
                full = self._full_frames(info, spans, detection)
            key_frames = [[full[i] for i in span.key_frames(info.times)] for span in spans]
            with _Timer(seconds, "captions"):
                warnings = self.captioners.fill(rows, spans, full, video_path, info.times)
                captions = [{c: row[c] for c in self.caption_columns if row.get(c)} for row in rows]
                for row, texts in zip(rows, captions):
                    row["caption"] = next(iter(texts.values()), None)
            with _Timer(seconds, "flow"):
                if self.flow is not None:
                    self._flow_and_camera(rows, spans, full if self.flow.full_resolution else frames, info.times)
            with _Timer(seconds, "clip"):
                if self.clip_enabled:
                    self._clip_scores(rows, key_frames, captions)
            masks = detection.masks() if detection is not None else None
        text_masks = [None if masks is None else [masks[i] for i in span.key_frames(info.times)] for span in spans]
        if self.ocr is not None:
            for row, clip_masks in zip(rows, text_masks):
                row["ocr_area"] = self.ocr.area(clip_masks)
        with _Timer(seconds, "aesthetic"):
            if self.aesthetic_backend == "classic":
                for row, frames_of_clip, clip_masks in zip(rows, key_frames, text_masks):
                    row["aesthetic_score"] = self.classic.score(frames_of_clip,
                                                                clip_masks if self.classic_excludes_text else None)
        with _Timer(seconds, "split"):
            if self.split_mode != "none":
                self._split(info, spans, rows)
        for row in rows:
            for score in SCORE_COLUMNS:
                if row.get(score) is not None:
                    row[f"{score}_config"] = self.stage_hashes[score]
        models = self.describe_models()
        for row, texts in zip(rows, captions):
            for score, text in models.items():
                if row.get(score) is not None:
                    row[f"{score}_model"] = text
            if row.get("clip_score") is not None:
                row["clip_score_model"] += f"; {self.clip_combine} over {', '.join(texts)}"
                from_random = [c for c in texts if "random weights" in (row.get(f"{c}_model") or "")]
                if from_random:
                    row["clip_score_model"] += f"; {', '.join(from_random)} from random weights"
        return VideoResult(video_path, rows, cut_records, seconds, warnings=warnings)

    def source_name(self, video_path: str) -> str:
        return source_name(video_path, self.cfg.get("source_root"))

    def _base_row(self, info: VideoInfo, span: ClipSpan) -> dict:
        shortest, longest = frame_intervals(info.times, span.start_frame, span.end_frame)
        return {
            **empty_row(), "clip_id": clip_id(self.source_name(info.path), span), "video_path": info.path,
            "start_s": float(info.times[span.start_frame]), "end_s": float(info.times[span.end_frame]),
            "start_frame": span.start_frame, "end_frame": span.end_frame,
            "fps": span_rate(info.times, span.start_frame, span.end_frame),
            "min_frame_interval_s": shortest, "max_frame_interval_s": longest,
            "width": info.width, "height": info.height, "num_frames": span.num_frames,
            "status": OK, "error": None,
        }

    def _flow_and_camera(self, rows: list[dict], spans: list[ClipSpan], frames, times: np.ndarray) -> None:
        for row, span in zip(rows, spans):
            measured = self.flow.measure(frames, span.start_frame, span.end_frame, times)
            row["flow_score"] = measured.score
            camera = self.camera.classify(measured.motions) if self.camera is not None else None
            if camera is not None:
                row.update(camera_motion=camera.label, camera_direction=camera.direction,
                           camera_motion_confidence=camera.confidence, camera_motion_config=self.camera_hash)

    def _full_frames(self, info: VideoInfo, spans: list[ClipSpan],
                     text: _TextDetection | None) -> dict[int, np.ndarray]:
        """The full-size frames every stage needs; the clips' key frames go to `text` as soon as they are decoded."""
        key_frames = {i for span in spans for i in span.key_frames(info.times)}
        wanted = set(key_frames)
        wanted.update(i for span in spans for i in self.captioners.frames_needed(span, info.times))
        if self.flow is not None and self.flow.full_resolution:
            for span in spans:
                wanted.update(self.flow.frames_needed(span.start_frame, span.end_frame, info.times))
        def decoded(index: int, image: np.ndarray) -> None:
            if text is not None and index in key_frames:
                text.submit(index, image)

        return decode_at(info, sorted(wanted), on_frame=decoded)

    def _clip_scores(self, rows: list[dict], key_frames: list[list[np.ndarray]],
                     captions: list[dict[str, str]]) -> None:
        encoder = self.clip_encoder()
        images = encoder.encode_images([f for frames in key_frames for f in frames])
        images = images.reshape(len(rows), -1, images.shape[-1])
        if self.aesthetic_backend == "laion":
            for row, value in zip(rows, self.laion().scores(images)):
                row["aesthetic_score"] = value
        if self.cfg["clip"]["enabled"]:
            from .clip_scoring import caption_scores

            for row, scores in zip(rows, caption_scores(images, captions, encoder.encode_texts)):
                for column, value in scores.items():
                    row[CLIP_SOURCE_COLUMNS[column]] = value
                if scores:
                    row["clip_score"] = CLIP_COMBINATIONS[self.clip_combine](list(scores.values()))

    def _split(self, info, spans: list[ClipSpan], rows: list[dict]) -> None:
        if self.split_dir is None:
            raise ValueError("curation.split.dir must be set when curation.split.mode is not none")
        self.split_dir.mkdir(parents=True, exist_ok=True)
        for row, span in zip(rows, spans):
            target = self.split_dir / f"{row['clip_id']}.mp4"
            row["clip_path"] = str(SPLITTERS[self.split_mode](info, span.start_frame, span.end_frame, target))


def curate_in_process(curator: VideoCurator, videos) -> tuple[list[dict], dict[str, list[int]]]:
    """Curate `videos` one after another in this process: every row and each video's cut frames, by path (what
    benchmarks and tests score against the synthetic ground truth)."""
    rows, cuts = [], {}
    for video in videos:
        result = curator.curate(str(video))
        rows += result.rows
        cuts[str(video)] = [cut["frame"] for cut in result.cuts]
    return rows, cuts
