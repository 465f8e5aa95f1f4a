"""Attention-check videos: for each prompt, an obviously degraded copy of one arm's video, kept in the pack."""

import hashlib
import hmac

import av
import numpy as np

from lightning_svd.errors import UserError
from lightning_svd.preference.assignment import attention_arm
from lightning_svd.preference.pack import ATTENTION_PREFIX, PackVideo, StudyPack, resolve_inside
from lightning_svd.preference.videos import degrade
from lightning_svd.video import frame_rate, read_frames, write_video

ATTENTION_FOLDER = "attention_checks"


def ensure_attention_videos(pack: StudyPack, seed: int, key: bytes) -> dict[tuple[str, str], PackVideo]:
    """Write any missing degraded copies under <pack>/attention_checks/; keyed like pack.videos.

    The file name is a keyed hash (`key`: the study's secret) of the source path and seed, so a changed manifest
    gets fresh copies, a restart reuses them, and a shared pack cannot ship a file (or link) under a name the app
    would take for its own check. An existing file is held to the pack like a manifest video.
    """
    folder = pack.root / ATTENTION_FOLDER
    videos = {}
    for index, prompt in enumerate(pack.prompts):
        arm = attention_arm(pack, index)
        source = pack.videos[(arm, prompt.id)]
        digest = hmac.new(key, f"{source.relative_path}|{seed}".encode(), hashlib.sha256).hexdigest()[:16]
        relative_path = f"{ATTENTION_FOLDER}/{digest}.mp4"
        target = pack.root / relative_path
        if not (target.is_file() or target.is_symlink()):
            try:
                folder.mkdir(exist_ok=True)
                frames, fps = read_frames(source.path), max(1, round(frame_rate(source.path)))
                even = frames[:, : frames.shape[1] // 4 * 4, : frames.shape[2] // 2 * 2]
                write_video(target, degrade(even, np.random.default_rng([seed, index])), fps)
            except (OSError, ValueError, av.FFmpegError) as error:
                raise UserError(f"cannot make the attention-check video for {source.relative_path} in {folder} "
                                f"({error}); make the pack writable or set study.attention_check_rate=0") from error
        videos[(ATTENTION_PREFIX + arm, prompt.id)] = PackVideo(ATTENTION_PREFIX + arm, prompt.id, relative_path,
                                                                 resolve_inside(pack.root, relative_path))
    return videos
