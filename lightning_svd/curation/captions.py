"""Captions that already exist beside each video (the `sidecar` captioner, column `caption_sidecar`).

Looked up in this order for `<dir>/<name>.<ext>`:
1. `<dir>/<name>.json` with a `scenes` list of `{start_frame, end_frame, caption}` (the synthetic corpus' ground
   truth): the caption of the scene that overlaps the clip the most;
2. `<dir>/<name>.captions.json`, a list of timed captions `[{"start_s", "end_s", "caption"}]` (datasets that come
   captioned per segment): the caption overlapping the clip the most;
3. `<dir>/<name>.txt`: one caption for the whole video.
A clip without any of these gets null. A sidecar that cannot be read (malformed JSON, a binary file, missing keys) is
skipped with a warning for its video: a bad caption file never costs the clips.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class SidecarError(ValueError):
    """A sidecar file that is not in its convention's format."""


def _best_overlap(segments: list[tuple[float, float, str]], start: float, end: float) -> str | None:
    best, best_overlap = None, 0.0
    for seg_start, seg_end, caption in segments:
        overlap = min(end, seg_end) - max(start, seg_start)
        if overlap > best_overlap and caption:
            best, best_overlap = caption, overlap
    return best


def _text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SidecarError(f"not UTF-8 text ({err.reason} at byte {err.start})") from err
    if "\x00" in text:
        raise SidecarError("binary data (NUL bytes), not text")
    return text


def _json(path: Path):
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise SidecarError(f"malformed JSON ({err.msg}, line {err.lineno} column {err.colno})") from err


def _scenes(path: Path) -> list[tuple[float, float, str]] | None:
    data = _json(path)
    if not (isinstance(data, dict) and isinstance(data.get("scenes"), list)):
        return None  # another tool's JSON beside the video: not a caption file
    return [(float(s["start_frame"]), float(s["end_frame"]), _caption(s)) for s in data["scenes"]]


def _timed(path: Path) -> list[tuple[float, float, str]]:
    data = _json(path)
    if not isinstance(data, list):
        raise SidecarError(f"expected a list of timed captions, found {type(data).__name__}")
    return [(float(s["start_s"]), float(s["end_s"]), _caption(s)) for s in data]


def _caption(entry) -> str | None:
    caption = entry.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise SidecarError(f"a caption is {type(caption).__name__}, not text")
    return caption


@dataclass(frozen=True)
class SidecarCaptioner:
    column = "caption_sidecar"

    def load(self, video_path: str) -> tuple[str | None, list[tuple[float, float, str]], list[str]]:
        """The video's caption segments in frames (`"frames"`) or seconds (`"seconds"`) from the first sidecar that
        reads, and a warning per sidecar that does not; read once per video."""
        path = Path(video_path)
        readers = (("frames", path.with_suffix(".json"), _scenes),
                   ("seconds", path.with_name(path.stem + ".captions.json"), _timed),
                   ("seconds", path.with_suffix(".txt"), lambda p: [(0.0, float("inf"), _text(p).strip())]))
        warnings = []
        for unit, file, read in readers:
            if not file.is_file():
                continue
            try:
                segments = read(file)
            except (SidecarError, KeyError, TypeError, ValueError, OSError) as err:
                reason = f"missing key {err}" if isinstance(err, KeyError) else str(err)
                warnings.append(f"caption sidecar {file.name} ignored: {reason}")
                continue
            if segments is not None:
                return unit, segments, warnings
        return None, [], warnings

    def captions(self, video_path: str, spans: list[tuple[int, int]],
                 times: np.ndarray) -> tuple[list[str | None], list[str]]:
        """One caption (or None) per span of frames, and the warnings of sidecars that could not be read. `times`
        holds each frame's time in seconds (one entry more: where the last frame ends)."""
        unit, segments, warnings = self.load(video_path)
        if unit == "frames":
            return [_best_overlap(segments, start, end) for start, end in spans], warnings
        return [_best_overlap(segments, times[start], times[end]) for start, end in spans], warnings
