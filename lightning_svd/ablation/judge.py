"""The tiny ablation's judge of samples: the domain network trained on the corpus' ground truth (cached).

It is not the score that filtered the arms (the classic quality backend), so it can say independently how many of
an arm's samples look degraded; its pooled features give the domain FVD, and its per-video scores drive the
simulated rater panel (visual quality: 1 - P(degraded); prompt following: closeness in feature space to the real
clip the prompt came from).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lightning_svd.ablation.data import Split, synthetic_truth
from lightning_svd.evaluation import domain
from lightning_svd.evaluation.domain import (
    DomainNet,
    DomainReport,
    cached_domain_net,
    examples_from_videos,
    train_domain_net,
)


@dataclass
class SampleJudge:
    net: DomainNet
    report: DomainReport
    threshold: float

    def degraded_probability(self, videos: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) uint8 -> (B,) P(any planted degradation)."""
        return self.net.degraded_probability(videos)

    def degraded_share(self, videos: np.ndarray) -> float:
        """The share of videos the detector calls degraded (P above `threshold`)."""
        return float((self.degraded_probability(videos) > self.threshold).mean())

    def features(self, videos: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net(torch.from_numpy(videos).permute(0, 1, 4, 2, 3).contiguous()).numpy()

    def scores(self, videos: np.ndarray, prompt_clips: np.ndarray) -> dict[str, np.ndarray]:
        """Per video, higher is better: `quality` = 1 - P(degraded); `prompt_following` = minus the feature
        distance to the real clip of its prompt (videos prompt-major per repetition, as the proxies sample)."""
        own = np.arange(len(videos)) % len(prompt_clips)
        distance = np.linalg.norm(self.features(videos) - self.features(prompt_clips)[own], axis=1)
        return {"quality": 1.0 - self.degraded_probability(videos), "prompt_following": -distance}

    def describe(self) -> str:
        accuracy, chance = self.report.heldout_accuracy, self.report.chance
        heads = ", ".join(f"{head} {accuracy[head]:.0%} (chance {chance[head]:.0%})" for head in accuracy)
        return (f"domain network trained {self.report.steps} steps on {self.report.num_train} corpus windows; "
                f"held-out accuracy on {self.report.num_heldout} windows of unseen videos: {heads}")


def corpus_videos_of(split: Split) -> tuple[list[str], list[str]]:
    """The training pool's and the held-out videos, when every one has synthetic ground truth (else empty)."""
    pool = sorted(set(split.train_pool["video_path"].to_pylist()))
    held = sorted(split.heldout_videos)
    if not all(synthetic_truth(path) is not None for path in [*pool, *held]):
        return [], []
    return pool, held


def build_judge(section, split: Split, num_frames: int, height: int, width: int, cache_dir: str,
                log) -> SampleJudge | None:
    """The judge trained on the pool's videos and measured on the held-out ones, cached by everything that decides
    it (videos, their ground truth, sizes, steps, seed and the network's code); None where the clips have no
    synthetic ground truth (real footage: nothing to learn the degradations from)."""
    pool, held = corpus_videos_of(split)
    if not pool:
        return None
    steps, seed = int(section.steps), int(section.seed)
    digest = hashlib.sha256(Path(domain.__file__).read_bytes())  # the network's code: a change retrains it
    for path in [*pool, "|", *held]:
        digest.update(path.encode())
        digest.update(Path(path).with_suffix(".json").read_bytes() if path != "|" else b"")
    digest.update(json.dumps([num_frames, height, width, steps, seed]).encode())

    def build():
        log.info(f"training the domain network ({steps} steps on the corpus' ground truth, cached)")
        train = examples_from_videos(pool, num_frames, height, width)
        heldout = examples_from_videos(held, num_frames, height, width)
        return train_domain_net(train, heldout, seed=seed, steps=steps, threads=1)  # 12 s; 113 s on 2 loaded threads

    net, report = cached_domain_net(Path(cache_dir).expanduser(), digest.hexdigest()[:16], build)
    return SampleJudge(net, report, float(section.threshold))
