"""Cascaded cut detection (SVD App. C): PySceneDetect detectors at three frame rates with their own thresholds.

A detector at the native rate finds hard cuts to the frame. Slow transitions (cross-fades, fades through black)
change little between neighbouring frames, so detectors at reduced rates see them as one large step between
two sampled frames; those cuts are only known to lie inside that step, so they carry the step as their window.
Cut lists are merged with a tolerance (the finest level's cut wins) and the frames are fed from memory, so the
video is decoded once for all levels.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, HashDetector, HistogramDetector

DETECTORS = {
    "adaptive": AdaptiveDetector,
    "content": ContentDetector,
    "histogram": HistogramDetector,
    "hash": HashDetector,
}


@dataclass(frozen=True)
class CutLevel:
    """One detector of the cascade: which PySceneDetect detector, at which frame rate, with which parameters.

    `fps=None` runs at the native rate. `params` go to the detector's constructor (for example `threshold`, or
    `adaptive_threshold` and `min_content_val` for the adaptive detector); `min_scene_len` is in seconds.
    """

    name: str
    detector: str
    fps: float | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.detector not in DETECTORS:
            choices = ", ".join(sorted(DETECTORS))
            raise ValueError(f"cut level {self.name!r}: unknown detector {self.detector!r}; choose from {choices}")

    def step(self, native_fps: float) -> int:
        """Frames between two samples at this level (1 at the native rate)."""
        if self.fps is None or self.fps >= native_fps:
            return 1
        return max(1, int(round(native_fps / self.fps)))

    def build(self):
        params = dict(self.params)
        params["min_scene_len"] = float(params.get("min_scene_len", 0.0))
        return DETECTORS[self.detector](**params)


@dataclass(frozen=True)
class Cut:
    """A cut: `frame` opens the next scene (or marks the middle of a transition); `[start_frame, end_frame)` is the
    window of frames that belong to neither scene (empty for a hard cut)."""

    frame: int
    start_frame: int
    end_frame: int
    level: str

    @property
    def is_hard(self) -> bool:
        return self.start_frame == self.end_frame

    def time_s(self, fps: float) -> float:
        return self.frame / fps


def run_level(frames_bgr: np.ndarray, fps: float, level: CutLevel, tolerance: float = 0.0) -> list[Cut]:
    """Feed every `step`-th frame to one detector; a cut reported at sample `t` lies between `t - step` and `t`.

    Reports closer than `tolerance` frames are joined into one cut spanning them (its frame is their middle)."""
    step = level.step(fps)
    detector = level.build()
    reported: list[int] = []
    last = 0
    for index in range(0, len(frames_bgr), step):
        timecode = FrameTimecode(index, fps=fps)
        reported.extend(tc.frame_num for tc in detector.process_frame(timecode, frames_bgr[index]))
        last = index
    reported.extend(tc.frame_num for tc in detector.post_process(FrameTimecode(last, fps=fps)))
    windows = []
    for frame in sorted(set(reported)):
        if frame > 0:
            windows.append((frame, frame) if step == 1 else (max(0, frame - step + 1), frame))
    return [Cut((start + end) // 2, start, end, level.name) for start, end in _cluster(windows, tolerance)]


def _cluster(windows: list[tuple[int, int]], tolerance: float) -> list[tuple[int, int]]:
    """Join windows closer than `tolerance` frames: one slow transition often trips a detector several times."""
    clusters: list[tuple[int, int]] = []
    for start, end in windows:
        if clusters and start - clusters[-1][1] <= tolerance:
            clusters[-1] = (clusters[-1][0], max(end, clusters[-1][1]))
        else:
            clusters.append((start, end))
    return clusters


def _gap(a: Cut, b: Cut) -> int:
    """Frames between two cut windows (0 when they overlap)."""
    return max(0, max(a.start_frame, b.start_frame) - min(a.end_frame, b.end_frame))


def merge_cuts(per_level: list[list[Cut]], fps: float, tolerance_s: float) -> list[Cut]:
    """Union of all levels, finest first: a cut is kept unless a finer level already has one within `tolerance_s`
    of its window (so a hard cut seen by every level keeps the native level's exact frame)."""
    tolerance = tolerance_s * fps
    kept: list[Cut] = []
    for cuts in per_level:
        accepted_before = list(kept)
        kept.extend(cut for cut in cuts if all(_gap(cut, other) > tolerance for other in accepted_before))
    return sorted(kept, key=lambda cut: cut.frame)


def luma_change(frames_rgb: np.ndarray, bins: int = 64) -> np.ndarray:
    """`change[i]`: L1 distance between the normalised luma histograms of frames `i - 1` and `i` (0 for frame 0).

    Histograms ignore where things are, so camera pans barely move this signal while cuts, cross-fades and
    fades move it frame after frame; that is what locates a transition inside a coarse level's window."""
    histograms = np.stack([
        np.bincount((cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) // (256 // bins)).ravel(), minlength=bins)
        for frame in frames_rgb
    ]).astype(np.float64)
    histograms /= histograms.sum(axis=1, keepdims=True)
    change = np.zeros(len(frames_rgb))
    change[1:] = np.abs(np.diff(histograms, axis=0)).sum(axis=1)
    return change


@dataclass(frozen=True)
class WindowRefiner:
    """Find the frames a transition really spans from the per-frame luma change around a detected cut.

    The peak of the change inside the cut's window is grown to both sides while the change stays above
    `ratio` times its local median (over `context_s` either side) and above `floor`, at most `reach_s` beyond
    the window. A run `[a, b]` is a transition with frames `[a, b)`; one elevated frame, or a peak `spike_ratio`
    times above the rest of its run, is a hard cut."""

    ratio: float = 1.6
    spike_ratio: float = 3.0
    floor: float = 0.02
    reach_s: float = 0.5
    context_s: float = 2.0

    def refine(self, cut: Cut, change: np.ndarray, fps: float) -> Cut:
        last = len(change) - 1
        peak = cut.start_frame + int(np.argmax(change[cut.start_frame:cut.end_frame + 1]))
        context = int(round(self.context_s * fps))
        baseline = float(np.median(change[max(1, peak - context):min(last, peak + context) + 1]))
        threshold = max(self.floor, self.ratio * baseline)
        if change[peak] <= threshold:
            return cut
        reach = int(round(self.reach_s * fps))
        low, high = max(1, cut.start_frame - reach), min(last, cut.end_frame + reach)
        first = peak
        while first - 1 >= low and change[first - 1] > threshold:
            first -= 1
        final = peak
        while final + 1 <= high and change[final + 1] > threshold:
            final += 1
        others = np.delete(change[first:final + 1], peak - first)
        if first == final or change[peak] >= self.spike_ratio * others.max():
            return Cut(peak, peak, peak, cut.level)
        return Cut((first + final) // 2, first, final, cut.level)


@dataclass(frozen=True)
class CutCascade:
    """The whole cascade: levels (finest first), the merge tolerance, and the optional window refinement."""

    levels: tuple[CutLevel, ...]
    merge_tolerance_s: float = 0.5
    refiner: WindowRefiner | None = None

    @classmethod
    def from_config(cls, node: dict) -> "CutCascade":
        levels = tuple(
            CutLevel(name=name, detector=spec["detector"], fps=spec.get("fps"), params=dict(spec.get("params") or {}))
            for name, spec in node["levels"].items()
            if spec.get("enabled", True)
        )
        if not levels:
            raise ValueError("curation.cuts.levels: enable at least one detector level")
        refine = node.get("refine") or {}
        refiner = WindowRefiner(**{k: float(v) for k, v in refine.items() if k != "enabled"})
        return cls(
            levels=levels,
            merge_tolerance_s=float(node.get("merge_tolerance_s", 0.5)),
            refiner=refiner if refine.get("enabled", True) else None,
        )

    def detect(self, frames_rgb: np.ndarray, fps: float) -> list[Cut]:
        frames_bgr = np.ascontiguousarray(frames_rgb[..., ::-1])
        tolerance = self.merge_tolerance_s * fps
        cuts = merge_cuts([run_level(frames_bgr, fps, level, tolerance) for level in self.levels], fps,
                          self.merge_tolerance_s)
        if self.refiner is None:
            return cuts
        change = luma_change(frames_rgb)
        return [self.refiner.refine(cut, change, fps) for cut in cuts]
