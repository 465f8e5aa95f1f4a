"""A contact sheet of the corpus: the middle frame of every scene, so a person can see what was generated."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..video import read_frames
from .corpus import corpus_videos, load_truth


def contact_sheet(root: str | Path, max_videos: int = 12) -> Image.Image:
    """One row per video, one tile per scene (middle content frame), labelled with motion/text/degradation."""
    rows = []
    for video in corpus_videos(root)[:max_videos]:
        truth = load_truth(video)
        frames = read_frames(video)
        tiles = []
        for scene in truth["scenes"]:
            tile = Image.fromarray(frames[(scene["start_frame"] + scene["end_frame"]) // 2])
            label = f"{scene['motion']} {scene['speed']:.1f}px"
            if scene["text"]:
                label += f" txt{scene['text_area']:.2f}"
            if scene["degradation"]:
                label += f" {scene['degradation']}"
            canvas = Image.new("RGB", (tile.width, tile.height + 12), (0, 0, 0))
            canvas.paste(tile, (0, 12))
            ImageDraw.Draw(canvas).text((2, 0), label, fill=(255, 255, 255))
            tiles.append(np.asarray(canvas))
        while len(tiles) < 4:
            tiles.append(np.zeros_like(tiles[0]))
        rows.append(np.concatenate(tiles[:4], axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))
