"""Motion score = mean optical-flow magnitude over a clip (SVD §3.1, App. C).

Two Farneback methods (OpenCV), chosen by `curation.flow.farneback.method`:

- `paper`: the paper's computation for the pretraining data: frames sampled at 2 fps, downscaled to 16 px on the
  short side, Farneback between consecutive samples, mean magnitude. The score is in pixels of the 16-px map per
  sampling step (1/fps s), so it does not depend on the source resolution.
- `compensated`: our variant for noisy footage: flow at 32 px between adjacent frames, contrast-normalised, minus
  the part that sensor noise adds, extrapolated linearly to one sampling step and rescaled to the 16-px map. Same
  nominal units as `paper`, not the same numbers: a `motion_bucket_id` map calibrated on one does not fit the other.

RAFT (torchvision) at 800x450 is the paper's choice for the high-quality finetuning set ("the motion scores are then
computed similarly"): mean magnitude between consecutive 2-fps samples, in pixels at RAFT's input size per step.
Each method's `describe()` is what the clip table's `flow_score_model` column records.

Every method also returns the global motion of each flow field it computed (`FlowMeasure.motions`, see
`global_motion`), from which `CameraClassifier` labels the clip's camera motion without a second flow pass.

Samples are the frames shown nearest each 1/fps s (`video_io.frames_at_rate`), and every flow is divided by the time
between its two frames, so a variable frame rate or a dropped frame changes no score's units. `times` is seconds per
frame of the video, one entry more for where the last frame ends.
"""

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .video_io import frames_at_rate, scaled_size, span_rate

FARNEBACK_METHODS = ("paper", "compensated")


@dataclass(frozen=True)
class FlowMeasure:
    """A clip's flow score and, per flow field behind it, its global motion (`global_motion`)."""

    score: float | None
    motions: list[np.ndarray] = field(default_factory=list)


def global_motion(flow: np.ndarray, seconds: float) -> np.ndarray:
    """The flow field `(H, W, 2)` (px between frames `seconds` apart) as an affine motion of the whole frame:
    `(tx, ty, zoom, rotation, shear, shear')` in short sides per second. `tx, ty` is the translation of the picture,
    `zoom` the divergence (> 0: it grows from the centre), rotation and the two shears the rest of the affine part; the
    last four are given as the motion they cause at the frame's root-mean-square distance from its centre, so all six
    compare (and average to zero over flow that is only noise).
    Robust least squares: pixels far from the current model (at first the median flow, which ignores a still logo or
    a moving object covering less than half the frame) are left out of each of two fits."""
    height, width = flow.shape[:2]
    short = min(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    xs, ys = (xs - (width - 1) / 2).ravel() / short, (ys - (height - 1) / 2).ravel() / short
    design = np.stack([np.ones_like(xs), xs, ys], axis=1)
    target = flow.reshape(-1, 2).astype(np.float64) / (short * seconds)
    model = np.median(target, axis=0)
    for _ in range(2):
        residual = np.linalg.norm(target - model, axis=1)
        keep = residual <= max(2.5 * float(np.median(residual)), 1e-9)
        coefficients = np.linalg.lstsq(design[keep], target[keep], rcond=None)[0]
        model = design @ coefficients
    (tx, ty), (a, c), (b, d) = coefficients
    radius = float(np.sqrt(np.mean(xs**2 + ys**2)))
    return np.array([tx, ty, *(np.array([a + d, c - b, a - d, b + c]) / 2 * radius)])


@dataclass(frozen=True)
class CameraMotion:
    """`label` pan, zoom, static or complex; `direction` where the camera turns (left, right, up, down: the picture
    moves the other way) for a pan, in or out for a zoom; `confidence` in [0, 1]."""

    label: str
    direction: str | None
    confidence: float


@dataclass(frozen=True)
class CameraClassifier:
    """A clip's dominant camera motion from the global motions of its flow fields (`global_motion`).

    The clip's motion is their mean; its energy splits into translation (pan, tilt), zoom, and the rest (rotation,
    shear, and the pairs' spread about the mean: shake, a pan that turns, or noise in the flow). A clip is static when
    its mean moves less than `static_below` short sides per second and the spread is under three times that (flow on
    a noisy still shot scatters a little, a handheld shake more; confidence: the margin left). Otherwise the larger
    of pan and zoom wins if it holds `min_share` of the energy (confidence: its share), else the clip is complex
    (confidence: the share neither holds)."""

    static_below: float = 0.03
    min_share: float = 0.6

    def __post_init__(self):
        if self.static_below <= 0 or not 0.5 <= self.min_share <= 1:
            raise ValueError(f"curation.camera: static_below must be > 0 and min_share in [0.5, 1], got "
                             f"{self.static_below} and {self.min_share}")

    def classify(self, motions: list[np.ndarray]) -> CameraMotion | None:
        if not motions:
            return None
        stacked = np.stack(motions)
        mean = stacked.mean(axis=0)
        spread = float(((stacked - mean) ** 2).sum(axis=1).mean())
        pan, zoom = float(mean[0] ** 2 + mean[1] ** 2), float(mean[2] ** 2)
        total = float((mean**2).sum()) + spread
        margin = 1.0 - max(np.sqrt(total - spread) / self.static_below, np.sqrt(spread) / (3 * self.static_below))
        if margin > 0:
            return CameraMotion("static", None, round(float(margin), 4))
        if max(pan, zoom) < self.min_share * total:
            return CameraMotion("complex", None, round(1.0 - max(pan, zoom) / total, 4))
        if zoom > pan:
            return CameraMotion("zoom", "in" if mean[2] > 0 else "out", round(zoom / total, 4))
        tx, ty = mean[:2]
        direction = ("left" if tx > 0 else "right") if abs(tx) >= abs(ty) else ("up" if ty > 0 else "down")
        return CameraMotion("pan", direction, round(pan / total, 4))


def sample_indices(times: np.ndarray, start: int, end: int, flow_fps: float) -> list[int]:
    """Frames of `[start, end)` at `flow_fps`; at least the first and last frame when the clip is shorter."""
    indices = frames_at_rate(times, start, end, flow_fps)
    if len(indices) < 2 and end - start >= 2:
        indices = [start, end - 1]
    return indices


@dataclass(frozen=True)
class Farneback:
    """OpenCV Farneback settings both methods share (the paper names the implementation, not its parameters)."""

    fps: float = 2.0
    short_side: int = 16
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 7
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.1

    full_resolution = False

    def _flow(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(
            first, second, None, self.pyr_scale, self.levels, self.winsize, self.iterations, self.poly_n,
            self.poly_sigma, 0,
        )

    def score(self, frames: dict[int, np.ndarray], start: int, end: int, times: np.ndarray) -> float | None:
        """Mean flow magnitude of the clip `[start, end)`; `frames` holds at least `frames_needed`."""
        return self.measure(frames, start, end, times).score


def _magnitude(flow: np.ndarray) -> float:
    return float(np.linalg.norm(flow, axis=2).mean())


@dataclass(frozen=True)
class PaperFarneback(Farneback):
    """The paper's plain computation: grey frames at `fps`, `short_side` px on the short side, Farneback between
    consecutive samples, mean magnitude over pixels and pairs. No extrapolation: a clip too short for two samples
    has no score (the paper profile's clips are 2 s or longer). A pair whose frames are not exactly 1/fps s apart (a
    rate that is not a multiple of fps, a variable rate) counts per 1/fps s."""

    def frames_needed(self, start: int, end: int, times: np.ndarray) -> list[int]:
        return frames_at_rate(times, start, end, self.fps)

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        width, height = scaled_size(frame.shape[1], frame.shape[0], self.short_side)
        return cv2.cvtColor(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)

    def measure(self, frames: dict[int, np.ndarray], start: int, end: int, times: np.ndarray) -> FlowMeasure:
        samples = self.frames_needed(start, end, times)
        if len(samples) < 2:
            return FlowMeasure(None)
        greys = [self._grey(frames[i]) for i in samples]
        step, magnitudes, motions = 1.0 / self.fps, [], []
        for k, (a, b) in enumerate(zip(samples, samples[1:])):
            flow, seconds = self._flow(greys[k], greys[k + 1]), times[b] - times[a]
            magnitudes.append(_magnitude(flow) * step / seconds)
            motions.append(global_motion(flow, seconds))
        return FlowMeasure(float(np.mean(magnitudes)), motions)

    def describe(self) -> str:
        return (f"farneback paper: {self.fps:g} fps, {self.short_side}-px short side, mean |flow| in px of that map "
                f"between consecutive samples ({1 / self.fps:g} s)")


@dataclass(frozen=True)
class CompensatedFarneback(Farneback):
    """Dense Farneback flow sampled at `fps`; mean magnitude in pixels of a `short_side`-px map per 1/fps s.

    Flow is computed on grey frames with `compute_short_side` px on the short side, contrast-normalised per pair
    (washed-out footage otherwise reads as slow), and rescaled to the `short_side` map.
    At each sample `t` it measures the flow to frame `t + gap` (`gap=None`: frames one nominal sampling step apart)
    and extrapolates it linearly, by the time between the frames, to one sampling step (1/fps s). Sensor noise adds
    a flow magnitude that does not grow with the time gap while motion does, so with `noise_compensated` the score
    is `|F(t, t+2g)| - |F(t, t+g)|` per frame (exactly the mean magnitude for clean footage), which keeps static but
    noisy shots below slowly moving ones."""

    compute_short_side: int = 32
    gap: int | None = 1
    noise_compensated: bool = True
    contrast_normalized: bool = True

    def _gap(self, times: np.ndarray, start: int, end: int) -> int:
        return self.gap or max(1, int(round(span_rate(times, start, end) / self.fps)))

    def _samples(self, times: np.ndarray, start: int, end: int) -> list[int]:
        reach = self._gap(times, start, end) * (2 if self.noise_compensated else 1)
        return frames_at_rate(times, start, end - reach, self.fps)

    def frames_needed(self, start: int, end: int, times: np.ndarray) -> list[int]:
        gap = self._gap(times, start, end)
        samples = self._samples(times, start, end)
        if not samples:
            return [start, end - 1] if end - start >= 2 else []
        offsets = (0, gap, 2 * gap) if self.noise_compensated else (0, gap)
        return sorted({t + offset for t in samples for offset in offsets})

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        width, height = scaled_size(frame.shape[1], frame.shape[0], self.compute_short_side)
        small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)

    def _normalise(self, grey: np.ndarray, reference: np.ndarray) -> np.ndarray:
        if not self.contrast_normalized:
            return grey.round().astype(np.uint8)
        return np.clip((grey - reference.mean()) / (reference.std() + 1e-3) * 40.0 + 128.0, 0, 255).astype(np.uint8)

    def measure(self, frames: dict[int, np.ndarray], start: int, end: int, times: np.ndarray) -> FlowMeasure:
        """The camera sees the longer flow of each sample (`t` to `t + 2 gap` when noise-compensated)."""
        if end - start < 2:
            return FlowMeasure(None)
        step, gap = 1.0 / self.fps, self._gap(times, start, end)
        samples = self._samples(times, start, end)
        if not samples:
            seconds = times[end - 1] - times[start]
            flow = self._pair_flow(frames[start], frames[end - 1])
            return FlowMeasure(_magnitude(flow) / seconds * step * self._to_map(frames[start]),
                               [global_motion(flow, seconds)])
        per_second, motions = [], []
        for t in samples:
            near = self._pair_flow(frames[t], frames[t + gap])
            if self.noise_compensated:
                far = self._pair_flow(frames[t], frames[t + 2 * gap])
                per_second.append(max(0.0, _magnitude(far) - _magnitude(near)) / (times[t + 2 * gap] - times[t + gap]))
                motions.append(global_motion(far, times[t + 2 * gap] - times[t]))
            else:
                per_second.append(_magnitude(near) / (times[t + gap] - times[t]))
                motions.append(global_motion(near, times[t + gap] - times[t]))
        return FlowMeasure(float(np.mean(per_second)) * step * self._to_map(frames[start]), motions)

    def _pair_flow(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow from `first` to `second`, both contrast-normalised by `first`'s statistics."""
        reference = self._grey(first)
        return self._flow(self._normalise(reference, reference), self._normalise(self._grey(second), reference))

    def _to_map(self, frame: np.ndarray) -> float:
        """Pixels at the compute size to pixels of the stored `short_side` map."""
        return self.short_side / min(self._grey(frame).shape)

    def describe(self) -> str:
        noise = "noise-compensated, " if self.noise_compensated else ""
        contrast = "contrast-normalised, " if self.contrast_normalized else ""
        pair = {None: "consecutive samples", 1: "adjacent frames"}.get(self.gap, f"frames {self.gap} apart")
        return (f"farneback compensated: {self.compute_short_side}-px flow between {pair}, {noise}{contrast}"
                f"extrapolated to {1 / self.fps:g} s, in px of a {self.short_side}-px-short-side map")


@dataclass(frozen=True)
class RaftFlow:
    """torchvision RAFT (`raft_small` or `raft_large`) with weights from a local state-dict file.

    Without weights the network is randomly initialised (seeded: reruns agree; for tests), and the table's flow model
    column says so."""

    fps: float = 2.0
    model: str = "raft_small"
    weights: str | None = None
    width: int = 800
    height: int = 448
    num_flow_updates: int = 12
    batch_pairs: int = 4
    device: str = "cpu"

    full_resolution = True

    def __post_init__(self):
        if self.width % 8 or self.height % 8 or min(self.width, self.height) < 128:
            raise ValueError(
                f"curation.flow.raft: width and height must be multiples of 8 and at least 128, "
                f"got {self.width}x{self.height} (e.g. 800x448 for the paper's 800x450)"
            )
        if self.model not in ("raft_small", "raft_large"):
            raise ValueError(f"curation.flow.raft.model must be raft_small or raft_large, got {self.model!r}")
        if self.weights and not Path(self.weights).expanduser().is_file():
            raise ValueError(f"curation.flow.raft.weights: no file at {self.weights} (a torchvision RAFT state dict)")

    def frames_needed(self, start: int, end: int, times: np.ndarray) -> list[int]:
        return sample_indices(times, start, end, self.fps)

    def network(self):
        """Built on first use, once per worker process."""
        cached = getattr(self, "_network", None)
        if cached is not None:
            return cached
        import torch
        from torchvision.models import optical_flow

        from .local_models import seeded_init

        with seeded_init():
            network = getattr(optical_flow, self.model)(weights=None)
        if self.weights:
            state = torch.load(Path(self.weights).expanduser(), map_location="cpu", weights_only=True)
            network.load_state_dict(state)
        network = network.eval().to(self.device)
        object.__setattr__(self, "_network", network)
        return network

    def _tensor(self, frame: np.ndarray):
        import torch

        resized = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(resized).permute(2, 0, 1).float().div(127.5).sub(1.0)

    def describe(self) -> str:
        return (f"{self.model} weights={self.weights or 'random (scores are not meaningful)'} "
                f"{self.width}x{self.height}, px per {1 / self.fps:g} s")

    def score(self, frames: dict[int, np.ndarray], start: int, end: int, times: np.ndarray) -> float | None:
        """Mean RAFT flow magnitude between consecutive samples, scaled to one sampling step (1/fps s)."""
        return self.measure(frames, start, end, times).score

    def measure(self, frames: dict[int, np.ndarray], start: int, end: int, times: np.ndarray) -> FlowMeasure:
        import torch

        indices = sample_indices(times, start, end, self.fps)
        if len(indices) < 2:
            return FlowMeasure(None)
        step = 1.0 / self.fps
        network = self.network()
        images = [self._tensor(frames[i]) for i in indices]
        magnitudes, motions = [], []
        with torch.inference_mode():
            for begin in range(0, len(indices) - 1, self.batch_pairs):
                stop = min(begin + self.batch_pairs, len(indices) - 1)
                first = torch.stack(images[begin:stop]).to(self.device)
                second = torch.stack(images[begin + 1:stop + 1]).to(self.device)
                flow = network(first, second, num_flow_updates=self.num_flow_updates)[-1]
                per_pair = flow.norm(dim=1).mean(dim=(1, 2)).cpu().tolist()
                gaps = [times[indices[k + 1]] - times[indices[k]] for k in range(begin, stop)]
                magnitudes.extend(m * step / g for m, g in zip(per_pair, gaps))
                fields = flow.permute(0, 2, 3, 1).cpu().numpy()
                motions.extend(global_motion(f, g) for f, g in zip(fields, gaps))
        return FlowMeasure(float(np.mean(magnitudes)), motions)


def build_flow(node: dict):
    """The scorer `curation.flow` names (`backend` farneback with its `method`, or raft)."""
    backend = node.get("backend", "farneback")
    fps = float(node.get("fps", 2.0))
    if backend == "farneback":
        settings = dict(node.get("farneback") or {})
        method, variant = settings.pop("method", None), settings.pop("compensated", None) or {}
        if method == "paper":
            return PaperFarneback(fps=fps, **settings)
        if method == "compensated":
            return CompensatedFarneback(fps=fps, **settings, **variant)
        raise ValueError(f"curation.flow.farneback.method must be {' or '.join(FARNEBACK_METHODS)}, got {method!r}")
    if backend == "raft":
        return RaftFlow(fps=fps, **dict(node.get("raft") or {}))
    raise ValueError(f"curation.flow.backend must be farneback or raft, got {backend!r}")
