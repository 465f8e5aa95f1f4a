"""Fréchet Video Distance as a torchmetrics `Metric`, and the on-disk cache of real-video statistics.

Features of real and generated videos are summed in float64 metric states (sum, sum of outer products,
count) that add up across DDP processes, so the distance is computed once from all features. Real
statistics loaded from the cache are held outside the synchronised states: every process may load them and
they still count once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torchmetrics import Metric

from .extractors import VideoFeatureExtractor
from .frechet import FeatureStatistics

SIDES = ("real", "fake")


def to_uint8_videos(videos: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) uint8 as is, or float in [-1, 1] quantised to uint8 exactly as decoded real frames are."""
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"videos must be (B, T, 3, H, W), got shape {tuple(videos.shape)}")
    if videos.dtype == torch.uint8:
        return videos
    if not videos.is_floating_point():
        raise ValueError(f"videos must be uint8 in [0, 255] or float in [-1, 1], got {videos.dtype}")
    return ((videos.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


class FrechetVideoDistance(Metric):
    """FVD between the videos given with `real=True` and those given with `real=False`.

    `update(videos, real)` takes (B, T, 3, H, W) uint8 or float in [-1, 1]. `compute()` returns the distance
    (float64); `result()` adds the sample counts, the extractor's identity and whether the number can stand
    beside the paper's. `ddof=0` is the biased covariance of the StyleGAN-V code behind the paper's protocol.
    With `reset_real_features=False`, `reset()` keeps the real side, so real videos are featurised once.
    """

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(self, extractor: VideoFeatureExtractor, reset_real_features: bool = True, ddof: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.extractor = extractor
        self.reset_real_features, self.ddof = reset_real_features, ddof
        dim = extractor.num_features
        for side in SIDES:
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.preloaded_real: FeatureStatistics | None = None

    def update(self, videos: torch.Tensor, real: bool) -> None:
        features = self.extractor(to_uint8_videos(videos).to(self.device)).double()
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.sum(dim=0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + features.T @ features)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + features.shape[0])

    def _statistics(self, side: str) -> FeatureStatistics:
        stats = FeatureStatistics(self.extractor.num_features)
        stats.total = getattr(self, f"{side}_sum").detach().cpu().numpy().copy()
        stats.outer = getattr(self, f"{side}_outer").detach().cpu().numpy().copy()
        stats.count = int(getattr(self, f"{side}_count"))
        if side == "real" and self.preloaded_real is not None:
            stats.merge(self.preloaded_real)
        return stats

    def compute(self) -> torch.Tensor:
        real, fake = self._statistics("real"), self._statistics("fake")
        minimum = self.ddof + 1
        if real.count < minimum or fake.count < minimum:
            raise ValueError(f"FVD needs at least {minimum} real and {minimum} generated videos, "
                             f"got {real.count} real and {fake.count} generated")
        return torch.tensor(real.frechet_distance(fake, ddof=self.ddof), dtype=torch.float64)

    def statistics(self, side: str) -> FeatureStatistics:
        """The summed statistics of one side ("real" or "fake") over all processes."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        with self.sync_context():
            return self._statistics(side)

    def load_real_statistics(self, stats: FeatureStatistics) -> None:
        """Use cached real statistics (every process may call this; they count once)."""
        if stats.dim != self.extractor.num_features:
            raise ValueError(f"real statistics have dimension {stats.dim}, the extractor gives "
                             f"{self.extractor.num_features}")
        self.preloaded_real = stats

    def reset(self) -> None:
        kept = {name: getattr(self, name).clone() for name in ("real_sum", "real_outer", "real_count")}
        super().reset()
        if self.reset_real_features:
            self.preloaded_real = None
        else:
            for name, value in kept.items():
                setattr(self, name, value)

    def labels(self) -> dict:
        """Extractor identity and comparability: the fields every FVD result carries."""
        return {"feature_extractor": self.extractor.identity(), "comparable": self.extractor.comparable,
                "reason": self.extractor.reason}

    def result(self) -> dict:
        value = float(self.compute())
        real, fake = self.statistics("real"), self.statistics("fake")
        covariance = "biased 1/N" if self.ddof == 0 else f"1/(N-{self.ddof})"
        return {"fvd": value, "num_real": real.count, "num_fake": fake.count, "covariance": covariance,
                **self.labels()}


@dataclass(frozen=True)
class FVDProtocol:
    """Everything that decides the real-video statistics; its hash keys the cache.

    `real_set` names the real clips (e.g. a hash of the selected clip list and frame indices), so a change to
    the reference set never reuses stale statistics.
    """

    extractor: dict
    num_frames: int
    resolution: tuple[int, int]
    preprocessing: str
    num_samples: int
    real_set: str
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["resolution"] = list(self.resolution)
        return data

    def key(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]


class RealStatisticsCache:
    """Real-video statistics under `<cache_dir>/fvd_stats/<protocol hash>.npz`, with the protocol inside."""

    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir).expanduser() / "fvd_stats"

    def path(self, protocol: FVDProtocol) -> Path:
        return self.root / f"{protocol.key()}.npz"

    def load(self, protocol: FVDProtocol) -> FeatureStatistics | None:
        path = self.path(protocol)
        if not path.is_file():
            return None
        stats, metadata = FeatureStatistics.load(path)
        if metadata.get("protocol") != json.loads(json.dumps(protocol.as_dict())):
            raise ValueError(f"{path} was written for another protocol (hash collision?); delete it to recompute")
        return stats

    def save(self, protocol: FVDProtocol, stats: FeatureStatistics) -> Path:
        if stats.count != protocol.num_samples:
            raise ValueError(f"protocol promises {protocol.num_samples} real samples, statistics hold {stats.count}")
        return stats.save(self.path(protocol), {"protocol": protocol.as_dict()})

    def get_or_compute(self, protocol: FVDProtocol, metric: FrechetVideoDistance,
                       real_batches: Callable[[], Iterable[torch.Tensor]], is_writer: bool = True) -> bool:
        """Load the protocol's real statistics into `metric`, or feed it `real_batches()` and store them.

        Returns True when the statistics came from the cache. Under DDP every process calls this with its own
        shard of the real clips; only `is_writer` (rank 0) writes the merged statistics.
        """
        cached = self.load(protocol)
        if cached is not None:
            metric.load_real_statistics(cached)
            return True
        for videos in real_batches():
            metric.update(videos, real=True)
        if is_writer:
            self.save(protocol, metric.statistics("real"))
        else:
            metric.statistics("real")
        return False
