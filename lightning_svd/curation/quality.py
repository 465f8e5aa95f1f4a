"""Measure the pipeline against ground truth (the synthetic corpus' sidecars): cut F1 and score rank correlations.

Cut matching is one-to-one and greedy by distance. Hard cuts match within `hard_tolerance_frames`, fades and
cross-fades within `soft_tolerance_s` of the transition's middle. For the hard-cut F1 the predictions that match a
soft cut are set aside (and vice versa), and every prediction matching nothing counts against both scores.
"""

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


@dataclass
class MatchCounts:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, other: "MatchCounts") -> None:
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 1.0 if denominator == 0 else 2 * self.true_positives / denominator


def _greedy_match(predicted: list[int], truth: list[int], tolerance: float) -> set[tuple[int, int]]:
    pairs = sorted(
        (abs(p - t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth) if abs(p - t) <= tolerance
    )
    used_p, used_t, matched = set(), set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            matched.add((i, j))
    return matched


def match_cuts(
    predicted_frames: list[int], truth_cuts: list[dict], fps: float,
    hard_tolerance_frames: int = 1, soft_tolerance_s: float = 0.5,
) -> dict[str, MatchCounts]:
    """Counts for `hard` and `soft` (fade + cross-fade) cuts of one video."""
    hard = [c["frame"] for c in truth_cuts if c["kind"] == "hard"]
    soft = [c["frame"] for c in truth_cuts if c["kind"] != "hard"]
    hard_pairs = _greedy_match(predicted_frames, hard, hard_tolerance_frames)
    soft_pairs = _greedy_match(predicted_frames, soft, soft_tolerance_s * fps)
    used_by_hard = {i for i, _ in hard_pairs}
    used_by_soft = {i for i, _ in soft_pairs if i not in used_by_hard}
    soft_pairs = {(i, j) for i, j in soft_pairs if i in used_by_soft}
    unmatched = len(predicted_frames) - len(used_by_hard) - len(used_by_soft)
    return {
        "hard": MatchCounts(len(hard_pairs), unmatched, len(hard) - len(hard_pairs)),
        "soft": MatchCounts(len(soft_pairs), unmatched, len(soft) - len(soft_pairs)),
    }


def cut_time_f1(predicted_s: list[float], reference_s: list[float], tolerance_s: float) -> MatchCounts:
    """Cuts given as times (seconds), matched one to one within `tolerance_s`: how two detectors agree, or one and
    the ground truth."""
    matched = len(_greedy_match(predicted_s, reference_s, tolerance_s))
    return MatchCounts(matched, len(predicted_s) - matched, len(reference_s) - matched)


def covering_scene(truth: dict, start_frame: int, end_frame: int) -> dict:
    """The ground-truth scene that overlaps the span `[start_frame, end_frame)` the most."""
    def overlap(scene):
        return min(end_frame, scene["end_frame"]) - max(start_frame, scene["start_frame"])
    return max(truth["scenes"], key=overlap)


def true_camera_directions(scene: dict) -> set[str | None]:
    """The `camera_direction` values right for a ground-truth scene. Its `direction_deg` is where the picture moves
    (0 right, 90 down), so the camera turns the other way; a diagonal pan accepts either of its two axes."""
    if scene["motion"] == "zoom":
        return {scene["zoom"]}
    if scene["motion"] != "pan":
        return {None}
    angle = np.deg2rad(scene["direction_deg"])
    dx, dy = np.cos(angle), np.sin(angle)
    return ({"left" if dx > 0 else "right"} if abs(dx) > 0.1 else set()) | (
        {"up" if dy > 0 else "down"} if abs(dy) > 0.1 else set())


def spearman(x, y) -> float:
    """Spearman rank correlation; NaN when either side is constant or fewer than three values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def evaluate_against_truth(rows: list[dict], cuts: dict[str, list[int]], truths: dict[str, dict]) -> dict:
    """Cut F1, score rank correlations and camera-motion accuracy (label, and label with direction) for the videos
    that have a ground-truth sidecar.

    `truths` maps a row's `video_path` to its sidecar, `cuts` the same paths to the detected cut frames.
    """
    counts = {"hard": MatchCounts(), "soft": MatchCounts()}
    pairs: dict[str, list[tuple[float, float]]] = {"flow": [], "ocr": [], "aesthetic": []}
    camera = {"clips": 0, "label": 0, "direction": 0}
    for path, truth in truths.items():
        if path not in cuts:
            continue
        for kind, value in match_cuts(cuts[path], truth["cuts"], truth["fps"]).items():
            counts[kind].add(value)
        clips = [r for r in rows if r["video_path"] == path and r["status"] == "ok"]
        for row in clips:
            scene = covering_scene(truth, row["start_frame"], row["end_frame"])
            if row.get("flow_score") is not None:
                pairs["flow"].append((row["flow_score"], scene["speed"]))
            if row.get("ocr_area") is not None:
                pairs["ocr"].append((row["ocr_area"], scene["text_area"]))
            if row.get("aesthetic_score") is not None:
                pairs["aesthetic"].append((row["aesthetic_score"], -scene["degradation_level"]))
            if row.get("camera_motion") is not None:
                camera["clips"] += 1
                camera["label"] += row["camera_motion"] == scene["motion"]
                camera["direction"] += (row["camera_motion"] == scene["motion"]
                                        and row.get("camera_direction") in true_camera_directions(scene))
    report = {
        "videos": len(truths),
        "cut_f1_hard": round(counts["hard"].f1, 4),
        "cut_f1_soft": round(counts["soft"].f1, 4),
        "cut_counts": {k: vars(v) for k, v in counts.items()},
    }
    if camera["clips"]:
        report["camera_accuracy"] = round(camera["label"] / camera["clips"], 4)
        report["camera_direction_accuracy"] = round(camera["direction"] / camera["clips"], 4)
        report["camera_clips"] = camera["clips"]
    for name, values in pairs.items():
        if values:
            score, target = zip(*values)
            report[f"{name}_spearman"] = round(spearman(score, target), 4)
            report[f"{name}_clips"] = len(values)
    return report
