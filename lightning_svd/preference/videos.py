"""The degradation that makes attention-check videos (reading and writing is `lightning_svd.video`, no torch)."""

import numpy as np


def degrade(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make a video obviously worse on both study questions: coarse blocks, strong noise, frames shuffled.

    Pixelation and noise wreck visual quality; shuffling the frames breaks the motion a prompt describes,
    so the clean side is the right answer to either question.
    """
    _, height, width, _ = frames.shape
    block = max(4, min(height, width) // 10)
    small = frames[:, ::block, ::block]
    blocky = np.repeat(np.repeat(small, block, axis=1), block, axis=2)[:, :height, :width]
    noisy = blocky.astype(np.float32) + rng.normal(0.0, 60.0, size=blocky.shape)
    shuffled = noisy[rng.permutation(len(frames))]
    return np.clip(shuffled, 0, 255).astype(np.uint8)
