"""Clips as spans of their source: cut windows removed, optional snapping to keyframes, a minimum length.

A clip is `[start_frame, end_frame)` of a source video; its id is a stable hash of the source path and the span,
so the same video curated twice gives the same ids. Physical splitting (`split.py`) is optional.
"""

import bisect
import hashlib
from dataclasses import dataclass
from pathlib import PurePath

from .cuts import Cut


@dataclass(frozen=True)
class ClipSpan:
    start_frame: int
    end_frame: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    def key_frames(self) -> tuple[int, int, int]:
        """First, middle and last frame: the frames the paper scores for OCR, CLIP and aesthetics."""
        return self.start_frame, (self.start_frame + self.end_frame - 1) // 2, self.end_frame - 1

    def frames_across(self, count: int) -> list[int]:
        """`count` frames at the centres of equal parts of the clip (fewer when the clip is shorter)."""
        count = max(1, min(count, self.num_frames))
        return sorted({self.start_frame + (2 * k + 1) * self.num_frames // (2 * count) for k in range(count)})


@dataclass(frozen=True)
class ClipPolicy:
    """How cuts become clips. `snap_to_keyframes` moves each clip start to the first keyframe at or after it
    (the paper's rule: the closest keyframe that does not cross the cut), so stream-copy splitting is exact."""

    min_clip_s: float = 1.0
    snap_to_keyframes: bool = False

    def spans(self, cuts: list[Cut], num_frames: int, fps: float, keyframes: tuple[int, ...] = ()) -> list[ClipSpan]:
        ends = [c.start_frame for c in cuts] + [num_frames]
        starts = [0] + [c.end_frame for c in cuts]
        spans = []
        for start, end in zip(starts, ends):
            if self.snap_to_keyframes and keyframes:
                position = bisect.bisect_left(keyframes, start)
                start = keyframes[position] if position < len(keyframes) else end
            if end - start >= max(1, round(self.min_clip_s * fps)):
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


def error_id(source: str) -> str:
    """Id of the single error row a source that could not be curated gets."""
    return hashlib.sha1(f"{source}|error".encode()).hexdigest()[:16]
