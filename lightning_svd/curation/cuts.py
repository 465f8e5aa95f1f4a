"""Cascaded cut detection (SVD App. C): PySceneDetect detectors at three frame rates with their own thresholds.

A detector at the native rate finds hard cuts to the frame. Slow transitions (cross-fades, fades through black)
change little between neighbouring frames, so detectors at reduced rates see them as one large step between
two sampled frames; those cuts are only known to lie inside that step, so they carry the step as their window.
Cut lists are merged with a tolerance (the finest level's cut wins) and the frames are fed from memory, so the
video is decoded once for all levels. Frames are sampled, and every tolerance measured, on the frames' presentation
times, so a variable frame rate needs nothing special.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, HashDetector, HistogramDetector

from .video_io import frames_at_rate, span_rate

DETECTORS = {
    "adaptive": AdaptiveDetector,
    "content": ContentDetector,
    "histogram": HistogramDetector,
    "hash": HashDetector,
}


@dataclass(frozen=True)
class CutLevel:
    """One detector of the cascade: which PySceneDetect detector, at which frame rate, with which parameters.

    `fps=None` runs on every frame. `params` go to the detector's constructor (for example `threshold`, or
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

    def samples(self, times: np.ndarray, num_frames: int) -> list[int]:
        """The frames this level sees: every frame, or the frames nearest each 1/fps s."""
        if self.fps is None or self.fps >= span_rate(times, 0, num_frames):
            return list(range(num_frames))
        return frames_at_rate(times, 0, num_frames, self.fps)

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

    def time_s(self, times: np.ndarray) -> float:
        return float(times[self.frame])


def run_level(frames_rgb: np.ndarray, times: np.ndarray, level: CutLevel, tolerance_s: float = 0.0) -> list[Cut]:
    """Feed the level's samples to one detector; a cut reported at a sample lies after the sample before it.

    Detectors get each frame's presentation time, in BGR as PySceneDetect expects (converted frame by frame: one
    reversed copy of the whole video costs more than all the detectors). Reports closer than `tolerance_s` are
    joined into one cut spanning them (its frame is their middle)."""
    samples = level.samples(times, len(frames_rgb))
    rate = span_rate(times, 0, len(frames_rgb))
    detector = level.build()
    reported: list[float] = []
    for index in samples:
        timecode = FrameTimecode(float(times[index]), fps=rate)
        frame = cv2.cvtColor(frames_rgb[index], cv2.COLOR_RGB2BGR)
        reported.extend(tc.seconds for tc in detector.process_frame(timecode, frame))
    reported.extend(tc.seconds for tc in detector.post_process(FrameTimecode(float(times[samples[-1]]), fps=rate)))
    shown = times[samples]
    positions = sorted({int(np.argmin(np.abs(shown - t))) for t in reported} - {0})
    windows = [(samples[position - 1] + 1, samples[position]) for position in positions]
    return [Cut((start + end) // 2, start, end, level.name) for start, end in _cluster(windows, times, tolerance_s)]


def _cluster(windows: list[tuple[int, int]], times: np.ndarray, tolerance_s: float) -> list[tuple[int, int]]:
    """Join windows closer than `tolerance_s`: one slow transition often trips a detector several times."""
    clusters: list[tuple[int, int]] = []
    for start, end in windows:
        if clusters and times[start] - times[clusters[-1][1]] <= tolerance_s + 1e-9:
            clusters[-1] = (clusters[-1][0], max(end, clusters[-1][1]))
        else:
            clusters.append((start, end))
    return clusters


def _gap(a: Cut, b: Cut, times: np.ndarray) -> float:
    """Seconds between two cut windows (0 when they overlap)."""
    return max(0.0, float(times[max(a.start_frame, b.start_frame)] - times[min(a.end_frame, b.end_frame)]))


def merge_cuts(per_level: list[list[Cut]], times: np.ndarray, tolerance_s: float) -> list[Cut]:
    """Union of all levels, finest first: a cut is kept unless a finer level already has one within `tolerance_s`
    of its window (so a hard cut seen by every level keeps the native level's exact frame)."""
    kept: list[Cut] = []
    for cuts in per_level:
        accepted_before = list(kept)
        kept.extend(cut for cut in cuts
                    if all(_gap(cut, other, times) > tolerance_s + 1e-9 for other in accepted_before))
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


def _within(shown: np.ndarray, begin: float, end: float) -> tuple[int, int]:
    """The first and last frame shown in `[begin, end]` seconds, frame 0 left out (it has no change)."""
    low = int(np.searchsorted(shown, begin - 1e-9, side="left"))
    high = int(np.searchsorted(shown, end + 1e-9, side="right")) - 1
    return max(1, low), min(len(shown) - 1, high)


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

    def refine(self, cut: Cut, change: np.ndarray, times: np.ndarray) -> Cut:
        shown = times[:len(change)]
        peak = cut.start_frame + int(np.argmax(change[cut.start_frame:cut.end_frame + 1]))
        context_low, context_high = _within(shown, shown[peak] - self.context_s, shown[peak] + self.context_s)
        baseline = float(np.median(change[context_low:context_high + 1]))
        threshold = max(self.floor, self.ratio * baseline)
        if change[peak] <= threshold:
            return cut
        low, high = _within(shown, shown[cut.start_frame] - self.reach_s, shown[cut.end_frame] + self.reach_s)
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

    def detect(self, frames_rgb: np.ndarray, times: np.ndarray) -> list[Cut]:
        """Cuts of the frames `frames_rgb`, shown at `times` seconds (one entry more: where the last frame ends)."""
        tolerance = self.merge_tolerance_s
        cuts = merge_cuts([run_level(frames_rgb, times, level, tolerance) for level in self.levels], times, tolerance)
        if self.refiner is None:
            return cuts
        change = luma_change(frames_rgb)
        return [self.refiner.refine(cut, change, times) for cut in cuts]
