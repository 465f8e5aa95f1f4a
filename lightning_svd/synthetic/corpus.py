"""The deterministic synthetic video corpus: the tiny profile's embedded data and every test's videos.

Each source video joins several scenes (see `scenes.py`) with hard cuts, cross-fades and fades to black, is encoded
as a real H.264 MP4, and has a ground-truth JSON sidecar beside it (`vid_000.mp4` + `vid_000.json`) recording the
cuts (frame and kind) and, per scene, its span, camera motion (pan with speed and direction, zoom in or out, or
static), text area, degradation and caption.
The corpus is cached under `<cache_dir>/corpus/<spec hash>/` and generated once, atomically.
"""

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..video import write_video
from .scenes import DEGRADATIONS, SceneRenderer, caption_for, random_scene

GENERATOR_VERSION = 4   # 4: captions name the background first
TRANSITION_FRAMES = {"hard": 0, "crossfade": 12, "fade": 16}
TRANSITION_ODDS = {"hard": 0.5, "crossfade": 0.25, "fade": 0.25}


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate; its hash names the cache folder, so any change makes a new corpus."""

    num_videos: int = 24
    min_seconds: float = 4.0
    max_seconds: float = 8.0
    fps: int = 24
    width: int = 160
    height: int = 96
    seed: int = 0
    min_scene_seconds: float = 1.0
    static_fraction: float = 0.25
    text_fraction: float = 0.3
    degraded_fraction: float = 0.3
    keyframe_interval: int = 48
    crf: int = 18
    texture: float = 1.0               # background texture strength: 1 textured, 0 flat colour
    caption_degradation: bool = False  # captions name a scene's planted degradation ("a grainy shot of ...")
    degradations: tuple[str, ...] = DEGRADATIONS  # the kinds a degraded scene draws from
    noise_grain: int = 1               # planted noise's grain size in pixels (1: per pixel); larger grain survives
                                       # the downscale to a small model's frames
    zoom_fraction: float = 0.0         # share of moving scenes that zoom in or out instead of panning
    shape_scale: float = 1.0           # shapes' size (radius 7-14 px times this): small proxies' frames need larger

    @classmethod
    def from_config(cls, node) -> "CorpusSpec":
        """Build from a config mapping, ignoring keys that are not spec fields."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(node).items() if k in names}
        if "degradations" in values:
            values["degradations"] = tuple(values["degradations"])
        return cls(**values)

    def validate(self) -> None:
        if self.num_videos < 1:
            raise UserError(f"corpus.num_videos must be at least 1, got {self.num_videos}")
        if self.width % 4 or self.height % 4 or self.width < 32 or self.height < 32:
            raise UserError(
                f"corpus.width and corpus.height must be multiples of 4 and >= 32, got {self.width}x{self.height}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise UserError("corpus.min_seconds must be positive and at most corpus.max_seconds")
        if not 0.0 <= self.texture <= 1.0:
            raise UserError(f"corpus.texture must lie in [0, 1] (0 flat, 1 textured), got {self.texture}")
        unknown = sorted(set(self.degradations) - set(DEGRADATIONS))
        if unknown or not self.degradations:
            raise UserError(f"corpus.degradations must list some of {', '.join(DEGRADATIONS)}; got "
                            f"{list(self.degradations)}")
        if self.noise_grain < 1:
            raise UserError(f"corpus.noise_grain must be a whole number of pixels >= 1, got {self.noise_grain}")
        if not 0.0 <= self.zoom_fraction <= 1.0:
            raise UserError(f"corpus.zoom_fraction must lie in [0, 1], got {self.zoom_fraction}")
        if not 0.25 <= self.shape_scale <= 3.0:
            raise UserError(f"corpus.shape_scale must lie in [0.25, 3] (1: radius 7-14 px), got {self.shape_scale}")
        if self.min_seconds < 2 * self.min_scene_seconds:
            raise UserError("corpus.min_seconds must fit two scenes: make it >= 2 * corpus.min_scene_seconds")

    def key(self) -> str:
        values = asdict(self)
        if not self.zoom_fraction:  # corpora without zooms are the ones made before zooms existed: same key, same cache
            del values["zoom_fraction"]
        if self.shape_scale == 1.0:  # likewise corpora of the original shape sizes
            del values["shape_scale"]
        payload = json.dumps({"generator_version": GENERATOR_VERSION, **values}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plan_video(spec: CorpusSpec, index: int) -> tuple[list, list[str], list[int], int]:
    """Decide a video's scenes, the transitions between them and every scene's content length (frames)."""
    rng = np.random.default_rng([spec.seed, index])
    num_frames = int(round(rng.uniform(spec.min_seconds, spec.max_seconds) * spec.fps))
    min_scene = int(round(spec.min_scene_seconds * spec.fps))
    max_scenes = max(2, num_frames // (min_scene + max(TRANSITION_FRAMES.values())))
    num_scenes = int(rng.integers(2, min(4, max_scenes) + 1))
    kinds = list(TRANSITION_ODDS)
    transitions = [str(rng.choice(kinds, p=list(TRANSITION_ODDS.values()))) for _ in range(num_scenes - 1)]
    content = num_frames - sum(TRANSITION_FRAMES[k] for k in transitions)
    spare = content - num_scenes * min_scene
    weights = rng.dirichlet(np.ones(num_scenes))
    lengths = [min_scene + int(spare * w) for w in weights]
    lengths[-1] += content - sum(lengths)
    scenes = [
        random_scene(
            rng,
            static=rng.random() < spec.static_fraction,
            text=rng.random() < spec.text_fraction,
            degraded=rng.random() < spec.degraded_fraction,
            degradations=tuple(spec.degradations),
            zoom=spec.zoom_fraction > 0 and rng.random() < spec.zoom_fraction,  # no draw without zooms: same corpus
            frames=length,
            shape_scale=spec.shape_scale,
        )
        for length in lengths
    ]
    return scenes, transitions, lengths, num_frames


def render_video(spec: CorpusSpec, index: int, out_dir: Path) -> dict:
    """Render, encode and describe video `index`; returns its ground truth (also written as the sidecar)."""
    scenes, transitions, lengths, num_frames = plan_video(spec, index)
    renderers = [SceneRenderer(scene, spec.width, spec.height, spec.texture, spec.noise_grain) for scene in scenes]
    for scene in scenes:
        scene.caption = caption_for(scene, textured=spec.texture > 0, name_degradation=spec.caption_degradation)
    starts, cuts, cursor = [], [], 0
    for i, length in enumerate(lengths):
        starts.append(cursor)
        cursor += length
        if i < len(transitions):
            kind, span = transitions[i], TRANSITION_FRAMES[transitions[i]]
            middle = cursor if kind == "hard" else cursor + span // 2
            cuts.append({"frame": middle, "time_s": round(middle / spec.fps, 4), "kind": kind,
                         "start_frame": cursor, "end_frame": cursor + span})
            cursor += span
    assert cursor == num_frames

    def frames():
        scene_index = 0
        for f in range(num_frames):
            while scene_index + 1 < len(scenes) and f >= cuts[scene_index]["end_frame"]:
                scene_index += 1
            current = renderers[scene_index]
            cut = cuts[scene_index] if scene_index < len(cuts) else None
            if cut is None or f < cut["start_frame"] or cut["kind"] == "hard":
                yield current.render(f - starts[scene_index])
                continue
            incoming = renderers[scene_index + 1]
            j, span = f - cut["start_frame"], cut["end_frame"] - cut["start_frame"]
            a = current.render(f - starts[scene_index]).astype(np.float32)
            b = incoming.render(f - cut["end_frame"]).astype(np.float32)
            if cut["kind"] == "crossfade":
                w = (j + 1) / (span + 1)
                yield (a * (1 - w) + b * w).round().astype(np.uint8)
            else:
                half = span // 2
                level = 1 - (j + 1) / half if j < half else (j - half + 1) / half
                yield ((a if j < half else b) * max(level, 0.0)).round().astype(np.uint8)

    name = f"vid_{index:03d}"
    write_video(out_dir / f"{name}.mp4", frames(), spec.fps, crf=spec.crf, keyframe_interval=spec.keyframe_interval)
    truth = {
        "generator_version": GENERATOR_VERSION, "video": f"{name}.mp4", "fps": spec.fps,
        "width": spec.width, "height": spec.height, "num_frames": num_frames,
        "duration_s": round(num_frames / spec.fps, 4), "keyframe_interval": spec.keyframe_interval,
        "cuts": cuts,
        "scenes": [
            {"index": i, "start_frame": starts[i], "end_frame": starts[i] + lengths[i],
             "start_s": round(starts[i] / spec.fps, 4), "end_s": round((starts[i] + lengths[i]) / spec.fps, 4),
             **scene.to_truth()}
            for i, scene in enumerate(scenes)
        ],
    }
    (out_dir / f"{name}.json").write_text(json.dumps(truth, indent=1))
    return truth


def ensure_corpus(spec: CorpusSpec, cache_dir: str | Path, progress: bool = True) -> Path:
    """Return the corpus folder for `spec`, generating it first if it is not cached yet.

    Generation happens in a temporary sibling folder that is renamed into place when complete, so an interrupted
    run leaves no half corpus behind and a concurrent one finds either nothing or a whole corpus.
    """
    spec.validate()
    root = Path(cache_dir).expanduser() / "corpus" / spec.key()
    if (root / "manifest.json").is_file():
        return root
    partial = root.with_name(f"{root.name}.partial-{time.time_ns()}")
    videos = partial / "videos"
    videos.mkdir(parents=True)
    started = time.perf_counter()
    try:
        truths = [
            render_video(spec, i, videos)
            for i in tqdm(range(spec.num_videos), desc="synthetic corpus", unit="video", disable=not progress)
        ]
        manifest = {
            "generator_version": GENERATOR_VERSION, "spec": asdict(spec), "key": spec.key(),
            "videos": [t["video"] for t in truths], "seconds_to_generate": round(time.perf_counter() - started, 2),
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            partial.rename(root)
        except OSError:
            if not (root / "manifest.json").is_file():
                raise
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return root


def load_truth(video_path: str | Path) -> dict:
    """The ground-truth sidecar of a corpus video."""
    return json.loads(Path(video_path).with_suffix(".json").read_text())


def corpus_videos(root: str | Path) -> list[Path]:
    return sorted((Path(root) / "videos").glob("*.mp4"))
