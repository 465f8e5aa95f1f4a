"""Text-area score (SVD App. C, Fig. 15): the fraction of a frame covered by detected text boxes.

Boxes are rasterised into one mask per frame so overlapping boxes count once; the clip's score aggregates the
first, middle and last frames (max by default: one frame full of text is enough to drop a clip).
Detectors implement `TextDetector`; the default is the PP-OCR DB text detector whose ONNX weights ship inside the
`rapidocr_onnxruntime` wheel (detection only, CPU, offline). Tesseract (the Debian `tesseract-ocr` binary) is the
alternative; another detector (CRAFT with local weights, say) only has to return a mask.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


class TextDetector(Protocol):
    name: str

    def text_mask(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Boolean `(H, W)` mask of the pixels inside detected text boxes."""


def polygons_to_mask(polygons, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int32)], 1)
    return mask.astype(bool)


@dataclass(frozen=True)
class PpOcrDbDetector:
    """PP-OCRv4 DB text detector run through rapidocr_onnxruntime's detection stage (no recognition).

    `model=None` uses the ONNX file bundled with the wheel. Frames are resized so their short side is
    `limit_side_len` (a multiple of 32), as PP-OCR does; `thresh`, `box_thresh` and `unclip_ratio` are the DB
    post-processing knobs. Detection time grows with the pixels: on 1280x720 frames 416 costs about a quarter of
    PP-OCR's 736 and misses only the smallest overlays (Spearman 0.93 against the true text area, 0.98 at 736;
    see benchmarks/RESULTS.md)."""

    model: str | None = None
    limit_side_len: int = 736
    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    threads: int = 1

    name = "ppocr_db"

    def __post_init__(self):
        if self.limit_side_len < 32 or self.limit_side_len % 32:
            raise ValueError(f"curation.ocr.ppocr_db.limit_side_len must be a multiple of 32 (the detector's stride), "
                             f"got {self.limit_side_len}")

    def _detector(self):
        cached = getattr(self, "_cached", None)
        if cached is not None:
            return cached
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as RapidTextDetector

        model = self.model or str(Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx")
        if not Path(model).is_file():
            raise FileNotFoundError(f"curation.ocr.ppocr_db.model: no ONNX file at {model}")
        detector = RapidTextDetector({
            "model_path": model, "limit_side_len": self.limit_side_len, "limit_type": "min",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "thresh": self.thresh, "box_thresh": self.box_thresh,
            "max_candidates": 1000, "unclip_ratio": self.unclip_ratio, "use_dilation": True, "score_mode": "fast",
            "use_cuda": False, "use_dml": False,
            "intra_op_num_threads": self.threads, "inter_op_num_threads": 1,
        })
        object.__setattr__(self, "_cached", detector)
        return detector

    def text_mask(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Detection runs with the short side at `limit_side_len` (down- or upscaled, both sides then rounded to
        multiples of 32 as the network needs, so PP-OCR resizes nothing again); the mask comes back at the frame's
        size (PP-OCR's own `min` limit only ever upscales, which makes HD frames needlessly slow)."""
        height, width = frame_rgb.shape[:2]
        scale = self.limit_side_len / min(height, width)
        size = (max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32))
        if size == (width, height):
            resized = frame_rgb
        else:
            resized = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        boxes, _ = self._detector()(cv2.cvtColor(resized, cv2.COLOR_RGB2BGR))
        mask = polygons_to_mask([] if boxes is None else list(boxes), size[1], size[0])
        if size == (width, height):
            return mask
        return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


@dataclass(frozen=True)
class TesseractDetector:
    """Word boxes from the `tesseract` binary (sparse-text page segmentation), kept above `min_confidence`.

    Frames are upscaled so their short side is at least `min_short_side` px: Tesseract wants ~20 px glyphs."""

    binary: str = "tesseract"
    min_confidence: float = 60.0
    min_short_side: int = 480
    language: str = "eng"

    name = "tesseract"

    def __post_init__(self):
        if shutil.which(self.binary) is None:
            raise FileNotFoundError(
                f"curation.ocr.tesseract.binary: {self.binary!r} not found; install the tesseract-ocr package "
                "or choose curation.ocr.backend=ppocr_db"
            )

    def text_mask(self, frame_rgb: np.ndarray) -> np.ndarray:
        height, width = frame_rgb.shape[:2]
        scale = max(1.0, self.min_short_side / min(height, width))
        image = cv2.resize(frame_rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)
        ok, png = cv2.imencode(".png", image[..., ::-1])
        if not ok:
            raise RuntimeError("could not encode a frame for tesseract")
        result = subprocess.run(
            [self.binary, "stdin", "stdout", "-l", self.language, "--psm", "11", "tsv"],
            input=png.tobytes(), capture_output=True, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"tesseract failed: {result.stderr.decode(errors='replace').strip()[:200]}")
        return polygons_to_mask(parse_tesseract_tsv(result.stdout.decode(), self.min_confidence, scale), height, width)


def parse_tesseract_tsv(tsv: str, min_confidence: float, scale: float = 1.0) -> list[np.ndarray]:
    """Word rectangles (level 5 rows with text and enough confidence) from Tesseract's TSV, as polygons whose
    corners are the first and last pixels inside the box (the convention `polygons_to_mask` fills)."""
    lines = tsv.strip().splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    column = {name: i for i, name in enumerate(header)}
    polygons = []
    for line in lines[1:]:
        cells = line.split("\t")
        if len(cells) < len(header) or cells[column["level"]] != "5" or not cells[column["text"]].strip():
            continue
        if float(cells[column["conf"]]) < min_confidence:
            continue
        left, top = float(cells[column["left"]]) / scale, float(cells[column["top"]]) / scale
        right = left + float(cells[column["width"]]) / scale - 1  # last pixel column inside the box
        bottom = top + float(cells[column["height"]]) / scale - 1
        polygons.append(np.array([[left, top], [right, top], [right, bottom], [left, bottom]]))
    return polygons


AGGREGATES = {"max": np.max, "mean": np.mean}


@dataclass(frozen=True)
class TextAreaScorer:
    """Text area of a clip: per-frame mask coverage on its key frames, aggregated by `aggregate`."""

    detector: TextDetector
    aggregate: str = "max"

    def __post_init__(self):
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"curation.ocr.aggregate must be one of {sorted(AGGREGATES)}, got {self.aggregate!r}")

    def frame_area(self, frame_rgb: np.ndarray) -> float:
        return float(self.detector.text_mask(frame_rgb).mean())

    def masks(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """One text mask per frame (the classic aesthetic score reuses them to leave overlays out)."""
        return [self.detector.text_mask(frame) for frame in frames]

    def area(self, masks: list[np.ndarray]) -> float:
        return float(AGGREGATES[self.aggregate]([mask.mean() for mask in masks]))

    def score(self, frames: list[np.ndarray]) -> float:
        return self.area(self.masks(frames))


def build_ocr(node: dict, threads: int = 1) -> TextAreaScorer | None:
    backend = node.get("backend", "ppocr_db")
    if backend in (None, "none"):
        return None
    if backend == "ppocr_db":
        detector = PpOcrDbDetector(threads=threads, **dict(node.get("ppocr_db") or {}))
    elif backend == "tesseract":
        detector = TesseractDetector(**dict(node.get("tesseract") or {}))
    else:
        raise ValueError(f"curation.ocr.backend must be ppocr_db, tesseract or none, got {backend!r}")
    return TextAreaScorer(detector=detector, aggregate=node.get("aggregate", "max"))
