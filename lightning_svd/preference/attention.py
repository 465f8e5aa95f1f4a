"""Attention-check videos: for each prompt, an obviously degraded copy of one arm's video, kept in the pack."""

import hashlib

import av
import numpy as np

from lightning_svd.errors import UserError
from lightning_svd.preference.assignment import attention_arm
from lightning_svd.preference.pack import ATTENTION_PREFIX, PackVideo, StudyPack
from lightning_svd.preference.videos import degrade
from lightning_svd.video import frame_rate, read_frames, write_video

ATTENTION_FOLDER = "attention_checks"


def ensure_attention_videos(pack: StudyPack, seed: int) -> dict[tuple[str, str], PackVideo]:
    """Write any missing degraded copies under <pack>/attention_checks/; keyed like pack.videos.

    The file name hashes the source path, so a changed manifest gets fresh copies and a restart reuses them.
    """
    folder = pack.root / ATTENTION_FOLDER
    videos = {}
    for index, prompt in enumerate(pack.prompts):
        arm = attention_arm(pack, index)
        source = pack.videos[(arm, prompt.id)]
        digest = hashlib.sha256(f"{source.relative_path}|{seed}".encode()).hexdigest()[:16]
        relative_path = f"{ATTENTION_FOLDER}/{digest}.mp4"
        target = pack.root / relative_path
        if not target.is_file():
            try:
                folder.mkdir(exist_ok=True)
                frames, fps = read_frames(source.path), max(1, round(frame_rate(source.path)))
                even = frames[:, : frames.shape[1] // 4 * 4, : frames.shape[2] // 2 * 2]
                write_video(target, degrade(even, np.random.default_rng([seed, index])), fps)
            except (OSError, ValueError, av.FFmpegError) as error:
                raise UserError(f"cannot make the attention-check video for {source.relative_path} in {folder} "
                                f"({error}); make the pack writable or set study.attention_check_rate=0") from error
        videos[(ATTENTION_PREFIX + arm, prompt.id)] = PackVideo(ATTENTION_PREFIX + arm, prompt.id, relative_path,
                                                                 target.resolve())
    return videos
