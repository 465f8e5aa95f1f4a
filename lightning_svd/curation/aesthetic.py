"""The weight-free aesthetic backend: a classic no-reference quality score (the LAION head is in `clip_scoring.py`).

`ClassicQuality` is a no-reference score from three textbook measurements on the luma channel, each turned into
a factor in (0, 1] that halves at a documented reference value, multiplied and scaled to 0..10:

- contrast: robust RMS contrast, `1.4826 * median(|L - median(L)|)` (text and small objects do not count);
  `q = c^2 / (c^2 + c0^2)`;
- noise: Immerkær's fast noise estimate (J. Immerkær, "Fast noise variance estimation", CVIU 1996) with a median
  instead of the mean so edges do not count: `sigma_n = median(|L * N|) / 0.6745 / 6` for the 3x3 operator N;
  `q = 1 / (1 + (sigma_n / n0)^2)`; measured on the frame and on its 2x2 means, the larger kept, so grain one or
  two pixels wide counts alike (a 3x3 operator barely sees grain coarser than a pixel);
- blur: the Gaussian width of the strongest edges, from re-blurring (Hu & de Haan, "Low cost robust blur
  estimator", ICIP 2006): at the top 0.5 % gradient pixels the gradient ratio `rho` between the frame and the
  frame re-blurred with `sigma_r` gives `sigma_b = sigma_r / sqrt(rho^2 - 1)`; `q = 1 / (1 + (sigma_b / b0)^2)`.

Measurements are in grey levels and pixels of the frame scaled to `short_side` px (never upscaled). The clip's
score is the mean over its first, middle and last frames. It is also a cheap pre-filter at scale.

Overlays are not footage: subtitles, logos and captions are added in post, crisp on any shot, and their hard edges
would pass a blurred scene as sharp. So the pixels inside the text boxes the OCR stage detected on the same frames
(`exclude`) are left out of all three measurements; a frame that is almost all text (less than
`min_kept_fraction` left) is measured whole.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .video_io import scaled_size

NOISE_OPERATOR = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def robust_contrast(luma: np.ndarray, keep: np.ndarray) -> float:
    values = luma[keep]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _interior(keep: np.ndarray) -> np.ndarray:
    """`keep` without the one-pixel border, where 3x3 filters see the padding."""
    inner = keep.copy()
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    return inner if inner.any() else keep


def immerkaer_sigma(luma: np.ndarray, keep: np.ndarray) -> float:
    response = np.abs(cv2.filter2D(luma, -1, NOISE_OPERATOR))
    return float(np.median(response[_interior(keep)]) / 0.6745 / 6.0)


def noise_sigma(luma: np.ndarray, keep: np.ndarray) -> float:
    """Immerkaer's estimate at the frame's scale and at half of it (2x2 means), whichever is larger."""
    height, width = (luma.shape[0] // 2) * 2, (luma.shape[1] // 2) * 2
    if min(height, width) < 8:
        return immerkaer_sigma(luma, keep)
    half = luma[:height, :width].reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
    half_keep = keep[:height, :width].reshape(height // 2, 2, width // 2, 2).all(axis=(1, 3))
    if not half_keep.any():
        return immerkaer_sigma(luma, keep)
    return max(immerkaer_sigma(luma, keep), immerkaer_sigma(half, half_keep))


def _gradient(luma: np.ndarray) -> np.ndarray:
    return np.hypot(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1))


def edge_blur_sigma(luma: np.ndarray, keep: np.ndarray, reblur_sigma: float = 1.0,
                    edge_percentile: float = 99.5) -> float:
    denoised = cv2.medianBlur(np.clip(luma, 0, 255).astype(np.uint8), 3).astype(np.float32)
    inside = _interior(keep)
    gradient = _gradient(denoised)[inside]
    reblurred = _gradient(cv2.GaussianBlur(denoised, (0, 0), reblur_sigma))[inside]
    edges = gradient >= np.percentile(gradient, edge_percentile)
    if not edges.any() or gradient[edges].max() <= 0:
        return float("inf")
    ratio = float(np.median(gradient[edges] / np.maximum(reblurred[edges], 1e-3)))
    return float(reblur_sigma / np.sqrt(max(ratio**2 - 1.0, 1e-3)))


@dataclass(frozen=True)
class ClassicQuality:
    """Weight-free no-reference quality in 0..10 (see the module docstring for the three factors and `exclude`)."""

    short_side: int = 256
    contrast_reference: float = 8.0
    noise_reference: float = 8.0
    blur_reference: float = 2.0
    min_kept_fraction: float = 0.25

    name = "classic"
    uses_clip = False

    def _kept_pixels(self, exclude: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
        width, height = size
        if exclude is None:
            return np.ones((height, width), dtype=bool)
        if exclude.shape != (height, width):
            exclude = cv2.resize(exclude.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        keep = ~exclude.astype(bool)
        return keep if keep.mean() >= self.min_kept_fraction else np.ones_like(keep)

    def measurements(self, frame_rgb: np.ndarray, exclude: np.ndarray | None = None) -> dict[str, float]:
        """Contrast, noise sigma and blur sigma of a frame, outside the boolean `(H, W)` mask `exclude`."""
        width, height = scaled_size(frame_rgb.shape[1], frame_rgb.shape[0], self.short_side)
        if (width, height) != (frame_rgb.shape[1], frame_rgb.shape[0]):
            frame_rgb = cv2.resize(frame_rgb, (width, height), interpolation=cv2.INTER_AREA)
        luma = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        keep = self._kept_pixels(exclude, (width, height))
        return {"contrast": robust_contrast(luma, keep), "noise": noise_sigma(luma, keep),
                "blur": edge_blur_sigma(luma, keep)}

    def frame_score(self, frame_rgb: np.ndarray, exclude: np.ndarray | None = None) -> float:
        m = self.measurements(frame_rgb, exclude)
        contrast = m["contrast"] ** 2 / (m["contrast"] ** 2 + self.contrast_reference**2)
        noise = 1.0 / (1.0 + (m["noise"] / self.noise_reference) ** 2)
        sharpness = 1.0 / (1.0 + (m["blur"] / self.blur_reference) ** 2)
        return 10.0 * contrast * noise * sharpness

    def score(self, frames: list[np.ndarray], excludes: list[np.ndarray] | None = None) -> float:
        """Mean frame score; `excludes` holds one text mask per frame (or is None to measure whole frames)."""
        masks = excludes if excludes is not None else [None] * len(frames)
        return float(np.mean([self.frame_score(f, m) for f, m in zip(frames, masks, strict=True)]))
