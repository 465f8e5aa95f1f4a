"""Captions that already exist beside each video (the `sidecar` captioner, column `caption_sidecar`).

Looked up in this order for `<dir>/<name>.<ext>`:
1. `<dir>/<name>.json` with a `scenes` list of `{start_frame, end_frame, caption}` (the synthetic corpus' ground
   truth): the caption of the scene that overlaps the clip the most;
2. `<dir>/<name>.captions.json`, a list of timed captions `[{"start_s", "end_s", "caption"}]` (datasets that come
   captioned per segment): the caption overlapping the clip the most;
3. `<dir>/<name>.txt`: one caption for the whole video.
A clip without any of these gets null.
"""

import json
from dataclasses import dataclass
from pathlib import Path


def _best_overlap(segments: list[tuple[float, float, str]], start: float, end: float) -> str | None:
    best, best_overlap = None, 0.0
    for seg_start, seg_end, caption in segments:
        overlap = min(end, seg_end) - max(start, seg_start)
        if overlap > best_overlap and caption:
            best, best_overlap = caption, overlap
    return best


@dataclass(frozen=True)
class SidecarCaptioner:
    column = "caption_sidecar"

    def load(self, video_path: str) -> tuple[str, list[tuple[float, float, str]]] | None:
        """The video's caption segments, in frames (`"frames"`) or seconds (`"seconds"`); read once per video."""
        path = Path(video_path)
        scene_file = path.with_suffix(".json")
        if scene_file.is_file():
            data = json.loads(scene_file.read_text())
            if isinstance(data, dict) and isinstance(data.get("scenes"), list):
                return "frames", [(s["start_frame"], s["end_frame"], s.get("caption")) for s in data["scenes"]]
        timed_file = path.with_name(path.stem + ".captions.json")
        if timed_file.is_file():
            data = json.loads(timed_file.read_text())
            return "seconds", [(float(s["start_s"]), float(s["end_s"]), s.get("caption")) for s in data]
        text_file = path.with_suffix(".txt")
        if text_file.is_file():
            return "seconds", [(0.0, float("inf"), text_file.read_text().strip())]
        return None

    def captions(self, video_path: str, spans: list[tuple[int, int]], fps: float) -> list[str | None]:
        loaded = self.load(video_path)
        if loaded is None:
            return [None] * len(spans)
        unit, segments = loaded
        if unit == "frames":
            return [_best_overlap(segments, start, end) for start, end in spans]
        return [_best_overlap(segments, start / fps, end / fps) for start, end in spans]
