"""Clips as spans of their source: cut windows removed, optional snapping to keyframes, a minimum length.

A clip is `[start_frame, end_frame)` of a source video; its id is a stable hash of the source path and the span,
so the same video curated twice gives the same ids. Lengths and the frames picked inside a clip come from the frames'
presentation times (`times`: seconds per frame, one entry more for where the last frame ends), so they hold at a
variable frame rate. Physical splitting (`split.py`) is optional.
"""

import bisect
import hashlib
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from .cuts import Cut
from .video_io import frame_at


@dataclass(frozen=True)
class ClipSpan:
    start_frame: int
    end_frame: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    def duration_s(self, times: np.ndarray) -> float:
        return float(times[self.end_frame] - times[self.start_frame])

    def key_frames(self, times: np.ndarray) -> tuple[int, int, int]:
        """First, middle (shown halfway between the first and the last) and last frame: the frames the paper scores
        for OCR, CLIP and aesthetics."""
        last = self.end_frame - 1
        middle = frame_at(times, (times[self.start_frame] + times[last]) / 2, self.start_frame, self.end_frame)
        return self.start_frame, middle, last

    def frames_across(self, count: int, times: np.ndarray) -> list[int]:
        """The frames shown at the centres of `count` equal parts of the clip's time (fewer when they repeat)."""
        begin, length = times[self.start_frame], self.duration_s(times)
        return sorted({frame_at(times, begin + (2 * k + 1) * length / (2 * count), self.start_frame, self.end_frame)
                       for k in range(max(1, count))})


@dataclass(frozen=True)
class ClipPolicy:
    """How cuts become clips. `snap_to_keyframes` moves each clip start to the first keyframe at or after it
    (the paper's rule: the closest keyframe that does not cross the cut), so stream-copy splitting is exact."""

    min_clip_s: float = 1.0
    snap_to_keyframes: bool = False

    def spans(self, cuts: list[Cut], times: np.ndarray, keyframes: tuple[int, ...] = ()) -> list[ClipSpan]:
        """The clips between the cuts of a video whose frames are shown at `times` that last `min_clip_s` or more."""
        ends = [c.start_frame for c in cuts] + [len(times) - 1]
        starts = [0] + [c.end_frame for c in cuts]
        spans = []
        for start, end in zip(starts, ends):
            if self.snap_to_keyframes and keyframes:
                position = bisect.bisect_left(keyframes, start)
                start = keyframes[position] if position < len(keyframes) else end
            if end > start and ClipSpan(start, end).duration_s(times) >= self.min_clip_s - 1e-6:
                spans.append(ClipSpan(start, end))
        return spans


def source_name(video_path: str, source_root: str | None) -> str:
    """The video's path relative to the folder being curated (POSIX separators), so ids do not depend on where
    the dataset is mounted; the path as given when there is no root or the video lies outside it."""
    if source_root is None:
        return video_path
    path, root = PurePath(video_path), PurePath(source_root)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else video_path


def clip_id(source: str, span: ClipSpan) -> str:
    """Stable id of a span of a source (its `source_name`): the first 16 hex digits of SHA-1 over the source and
    the frame range."""
    return hashlib.sha1(f"{source}|{span.start_frame}|{span.end_frame}".encode()).hexdigest()[:16]


def status_id(source: str, status: str) -> str:
    """Id of the single row a source without clips gets (status `error` or `empty`)."""
    return hashlib.sha1(f"{source}|{status}".encode()).hexdigest()[:16]
