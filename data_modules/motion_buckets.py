"""`motion_bucket_id` from a clip's `flow_score`: the paper never published this map, so ours is explicit.

The released models take a motion value in 0..255 (127 by default). We define it as the clip's flow
percentile in the training clip table, scaled to 0..255: a piecewise-linear map through stored quantiles of
`flow_score` (by default the 0, 5, 25, 50, 75, 95 and 100th percentiles). So 127.5 is the median motion of
the training data, 0 the most static clip and 255 the fastest; values outside the calibrated range clamp.
The quantiles are computed once from the clip table and stored with the model (its hyperparameters), so a
model keeps the meaning of its buckets when later stages train on other tables. What produced the flow scores (the
table's `flow_score_model` and `flow_score_config`) is stored beside them: the Farneback methods and RAFT score in
different units, so a map only fits tables scored the same way.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_PROBABILITIES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
MAX_BUCKET = 255


@dataclass
class MotionBuckets:
    """flow_score -> motion_bucket_id = 255 * (piecewise-linear percentile of the flow through `flow_values`)."""

    flow_values: list[float]
    probabilities: list[float] = field(default_factory=lambda: list(DEFAULT_PROBABILITIES))
    flow_method: str | None = None  # the calibrating table's flow_score_model (None: not recorded)
    flow_config: str | None = None  # its flow_score_config hash

    def __post_init__(self):
        self.flow_values = [float(v) for v in self.flow_values]
        self.probabilities = [float(p) for p in self.probabilities]
        if len(self.flow_values) != len(self.probabilities) or len(self.flow_values) < 2:
            raise ValueError(
                f"motion buckets need matching flow_values and probabilities (2 or more), got "
                f"{len(self.flow_values)} and {len(self.probabilities)}"
            )
        if any(b < a for a, b in zip(self.flow_values, self.flow_values[1:])):
            raise ValueError(f"motion bucket flow_values must be non-decreasing, got {self.flow_values}")

    @classmethod
    def calibrate(cls, flow_scores: Sequence[float], probabilities: Sequence[float] = DEFAULT_PROBABILITIES,
                  flow_method: str | None = None, flow_config: str | None = None):
        """Quantiles of the finite flow scores of a clip table, with what produced those scores."""
        scores = np.asarray([s for s in flow_scores if s is not None], dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            raise ValueError("cannot calibrate motion buckets: the clip table has no finite flow_score")
        return cls(np.quantile(scores, probabilities).tolist(), list(probabilities), flow_method, flow_config)

    def __call__(self, flow_score: float | None) -> int:
        """The bucket of one clip; a clip without a flow score gets the median bucket (127)."""
        if flow_score is None or not np.isfinite(flow_score):
            return MAX_BUCKET // 2
        flows = np.asarray(self.flow_values)
        probs = np.asarray(self.probabilities)
        # Equal quantiles (many identical static clips) would make the map ambiguous: use the middle percentile.
        unique, first = np.unique(flows, return_index=True)
        last = len(flows) - 1 - np.unique(flows[::-1], return_index=True)[1]
        middle = (probs[first] + probs[last]) / 2.0
        if unique.size == 1:
            return int(round(MAX_BUCKET * float(middle[0])))
        percentile = float(np.interp(flow_score, unique, middle))
        return int(round(MAX_BUCKET * percentile))

    def to_dict(self) -> dict:
        return {"flow_values": list(self.flow_values), "probabilities": list(self.probabilities),
                "flow_method": self.flow_method, "flow_config": self.flow_config}

    @classmethod
    def from_dict(cls, data: dict) -> "MotionBuckets":
        """Also reads maps stored before the flow method was recorded (their method is None)."""
        return cls(data["flow_values"], data["probabilities"], data.get("flow_method"), data.get("flow_config"))
