"""The Fréchet distance between two Gaussians and the running feature statistics it is computed from.

FD(N(mu1, S1), N(mu2, S2)) = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).

Only the trace of the matrix square root is needed. The symmetric form above equals tr((S1 S2)^1/2) and is
computed with two symmetric eigendecompositions in float64, so it is always real; eigenvalues at rounding-noise
level (the tiny negative or positive values a rank-deficient covariance leaves) are set to zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _as_float64(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _rounding_floor(eigenvalues: np.ndarray) -> float:
    """Eigenvalues below this are rounding noise of a zero eigenvalue (sqrt would inflate them to ~1e-8)."""
    return float(np.abs(eigenvalues).max(initial=0.0) * eigenvalues.shape[0] * np.finfo(np.float64).eps)


def _clipped(eigenvalues: np.ndarray) -> np.ndarray:
    return np.where(eigenvalues > _rounding_floor(eigenvalues), eigenvalues, 0.0)


def symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Principal square root of a symmetric positive semi-definite matrix (noise-level eigenvalues zeroed)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (eigenvectors * np.sqrt(_clipped(eigenvalues))) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^1/2) as tr((S1^1/2 S2 S1^1/2)^1/2), a symmetric PSD matrix whose eigenvalues are real."""
    root1 = symmetric_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sqrt(_clipped(eigenvalues)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Accepts NumPy arrays or torch tensors: means of shape (d,), covariances of shape (d, d).
    """
    mu1, mu2 = _as_float64("mu1", mu1), _as_float64("mu2", mu2)
    sigma1, sigma2 = _as_float64("sigma1", sigma1), _as_float64("sigma2", sigma2)
    dim = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (dim,) or mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"frechet_distance needs means (d,) and covariances (d, d) of one d; got mu1 {mu1.shape}, "
            f"sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}"
        )
    difference = mu1 - mu2
    value = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(value)


class FeatureStatistics:
    """Running sums of feature vectors in float64: sum, sum of outer products and count.

    Sums merge exactly, so statistics gathered in several processes (or several runs) combine into the
    statistics of one pass over all features. `ddof=0` gives the biased 1/N covariance of the StyleGAN-V FVD
    code the paper's I3D protocol comes from; `ddof=1` the unbiased 1/(N-1) one.
    """

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"feature dimension must be positive, got {dim}")
        self.dim = dim
        self.total = np.zeros(dim, dtype=np.float64)
        self.outer = np.zeros((dim, dim), dtype=np.float64)
        self.count = 0

    def update(self, features) -> FeatureStatistics:
        """Add a batch of features (N, dim)."""
        features = _as_float64("features", features)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must have shape (N, {self.dim}), got {features.shape}")
        self.total += features.sum(axis=0)
        self.outer += features.T @ features
        self.count += features.shape[0]
        return self

    def merge(self, other: FeatureStatistics) -> FeatureStatistics:
        """Add another accumulator's sums into this one (for example another process's)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into dimension {self.dim}")
        self.total += other.total
        self.outer += other.outer
        self.count += other.count
        return self

    @classmethod
    def merged(cls, parts: list[FeatureStatistics]) -> FeatureStatistics:
        if not parts:
            raise ValueError("nothing to merge: no statistics given")
        result = cls(parts[0].dim)
        for part in parts:
            result.merge(part)
        return result

    @property
    def mean(self) -> np.ndarray:
        self._require(1)
        return self.total / self.count

    def covariance(self, ddof: int = 0) -> np.ndarray:
        """(sum x x^T - N mu mu^T) / (N - ddof)."""
        self._require(ddof + 1)
        mean = self.total / self.count
        centred = self.outer - self.count * np.outer(mean, mean)
        return (centred + centred.T) / (2.0 * (self.count - ddof))

    def _require(self, minimum: int) -> None:
        if self.count < minimum:
            raise ValueError(f"statistics need at least {minimum} feature vectors, have {self.count}")

    def frechet_distance(self, other: FeatureStatistics, ddof: int = 0) -> float:
        return frechet_distance(self.mean, self.covariance(ddof), other.mean, other.covariance(ddof))

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write the sums (not mean and covariance, so merging stays exact) and JSON metadata to an .npz."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, total=self.total, outer=self.outer, count=np.int64(self.count),
                 metadata=np.array(json.dumps(metadata or {}, sort_keys=True)))
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple[FeatureStatistics, dict]:
        """Read statistics written by `save`; returns them with their metadata."""
        with np.load(Path(path), allow_pickle=False) as data:
            total, outer, count = data["total"], data["outer"], int(data["count"])
            metadata = json.loads(str(data["metadata"]))
        if total.ndim != 1 or outer.shape != (total.shape[0], total.shape[0]):
            raise ValueError(f"{path}: inconsistent statistics (sum {total.shape}, outer {outer.shape})")
        stats = cls(total.shape[0])
        stats.total, stats.outer, stats.count = total.astype(np.float64), outer.astype(np.float64), count
        return stats, metadata
