"""A tiny synthetic study pack, for tests and for trying the app without trained models.

    python -m lightning_svd.preference.demo_pack OUT_DIR [--prompts 4] [--arms 3]

Each prompt is a coloured shape moving over a gradient. The arms render the same scene differently:
`crisp` as described, `wobbly` with the shape jumping around, `faded` washed out and blurred, and `degraded`
(always present) pixelated and noisy, so a working study ranks it last.
"""

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_svd.preference.videos import degrade
from lightning_svd.video import write_video


@dataclass(frozen=True)
class Scene:
    """One prompt: a shape whose centre (x, y in [0, 1]) and radius (share of height) follow t in [0, 1]."""

    prompt_id: str
    text: str
    colour: tuple[int, int, int]
    square: bool
    path: Callable[[float], tuple[float, float, float]]


SCENES = (
    Scene("red_ball", "a red ball rolling from left to right", (220, 40, 40), False,
          lambda t: (0.1 + 0.8 * t, 0.6, 0.18)),
    Scene("blue_square", "a blue square falling from the top", (40, 80, 230), True,
          lambda t: (0.5, 0.1 + 0.8 * t, 0.16)),
    Scene("green_orbit", "a green disc circling the centre", (40, 200, 80), False,
          lambda t: (0.5 + 0.3 * math.cos(2 * math.pi * t), 0.5 + 0.3 * math.sin(2 * math.pi * t), 0.14)),
    Scene("yellow_bounce", "a yellow square bouncing up and down", (235, 210, 40), True,
          lambda t: (0.5, 0.75 - 0.5 * abs(math.sin(2 * math.pi * t)), 0.15)),
    Scene("purple_grow", "a purple ball growing larger", (160, 60, 200), False,
          lambda t: (0.5, 0.5, 0.08 + 0.3 * t)),
    Scene("white_bar", "a white bar sweeping across a dark sky", (245, 245, 245), True,
          lambda t: (0.9 - 0.8 * t, 0.3, 0.12)),
)
ARMS_BEFORE_DEGRADED = ("crisp", "wobbly", "faded")
DEGRADED_ARM = "degraded"


def render_scene(scene: Scene, num_frames: int, width: int, height: int, jitter: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Draw the scene as (T, H, W, 3) uint8; `jitter` moves the shape by up to that fraction of the frame."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([20 + 60 * ys / height, 30 + 40 * ys / height, 90 + 100 * ys / height], axis=-1)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for index in range(num_frames):
        cx, cy, radius = scene.path(index / max(1, num_frames - 1))
        cx += jitter * rng.uniform(-1, 1)
        cy += jitter * rng.uniform(-1, 1)
        dx, dy = np.abs(xs - cx * width), np.abs(ys - cy * height)
        r = radius * height
        inside = np.maximum(dx, dy) <= r if scene.square else dx**2 + dy**2 <= r**2
        frame = background.copy()
        frame[inside] = scene.colour
        frames[index] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def render_arm(arm: str, scene: Scene, num_frames: int, width: int, height: int,
               rng: np.random.Generator) -> np.ndarray:
    """The scene as one arm renders it."""
    if arm == "wobbly":
        return render_scene(scene, num_frames, width, height, jitter=0.12, rng=rng)
    crisp = render_scene(scene, num_frames, width, height, jitter=0.0, rng=rng)
    if arm == "crisp":
        return crisp
    if arm == "faded":
        pixels = crisp.astype(np.float32)
        shifts = [np.roll(pixels, shift, axis=axis) for shift in (-3, 0, 3) for axis in (1, 2)]
        return (0.5 * np.mean(shifts, axis=0) + 64).astype(np.uint8)
    if arm == DEGRADED_ARM:
        return degrade(crisp, rng)
    raise ValueError(f"unknown demo arm {arm!r}; choose from {ARMS_BEFORE_DEGRADED + (DEGRADED_ARM,)}")


def write_demo_pack(out_dir: Path, num_prompts: int = 4, num_arms: int = 3, num_frames: int = 16,
                    width: int = 128, height: int = 96, fps: int = 8, seed: int = 0) -> Path:
    """Write manifest.json and one H.264 MP4 per (arm, prompt) under `out_dir`; returns the manifest path."""
    if not 1 <= num_prompts <= len(SCENES):
        raise ValueError(f"num_prompts must be between 1 and {len(SCENES)}, got {num_prompts}")
    if not 2 <= num_arms <= len(ARMS_BEFORE_DEGRADED) + 1:
        raise ValueError(f"num_arms must be between 2 and {len(ARMS_BEFORE_DEGRADED) + 1}, got {num_arms}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    arms = [*ARMS_BEFORE_DEGRADED[: num_arms - 1], DEGRADED_ARM]
    scenes = SCENES[:num_prompts]
    videos = []
    for arm in arms:
        (out_dir / "videos" / arm).mkdir(parents=True, exist_ok=True)
        for scene in scenes:
            relative = f"videos/{arm}/{scene.prompt_id}.mp4"
            write_video(out_dir / relative, render_arm(arm, scene, num_frames, width, height, rng), fps)
            videos.append({"arm": arm, "prompt_id": scene.prompt_id, "path": relative})
    manifest = {
        "prompts": [{"id": scene.prompt_id, "text": scene.text} for scene in scenes],
        "arms": arms,
        "videos": videos,
    }
    manifest_path = out_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny synthetic study pack (H.264 MP4s, manifest).")
    parser.add_argument("out_dir", type=Path, help="folder to create the pack in")
    parser.add_argument("--prompts", type=int, default=4, help=f"number of prompts, 1 to {len(SCENES)}")
    parser.add_argument("--arms", type=int, default=3, help="number of arms, 2 to 4 (the last is degraded)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        manifest = write_demo_pack(args.out_dir, args.prompts, args.arms, args.frames, seed=args.seed)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote {manifest}")


if __name__ == "__main__":
    main()
