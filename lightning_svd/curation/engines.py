"""Engines run `VideoCurator.curate` over many videos and yield one `VideoResult` per video, in any order.

The local engine uses worker processes (spawn, one curator per process, recycled after `max_tasks_per_worker`
videos so decoder and detector memory cannot creep); with one worker it runs in this process. The Ray engine
(`ray_engine.py`) runs the same curator in Ray Data actors.
"""

import multiprocessing
import os
from collections.abc import Iterator

from ..quiet import silence_third_party
from .pipeline import VideoCurator, VideoResult, uses_torch

_worker_curator: VideoCurator | None = None


def limit_threads(threads: int, torch_too: bool) -> None:
    """Keep each worker to its share of the cores: OpenCV and (when CLIP or RAFT run) torch."""
    import cv2

    cv2.setNumThreads(threads)
    if torch_too:
        import torch

        torch.set_num_threads(threads)


def _init_worker(cfg: dict, threads: int) -> None:
    global _worker_curator
    silence_third_party()
    limit_threads(threads, uses_torch(cfg))
    _worker_curator = VideoCurator(cfg, threads=threads)


def _curate_in_worker(video_path: str) -> VideoResult:
    return _worker_curator.curate(video_path)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class LocalEngine:
    def __init__(self, cfg: dict, workers: int = 0, threads_per_worker: int = 1, max_tasks_per_worker: int = 50):
        self.cfg = cfg
        self.workers = workers or default_workers()
        self.threads = threads_per_worker
        self.max_tasks = max_tasks_per_worker

    def run(self, videos: list[str]) -> Iterator[VideoResult]:
        if not videos:
            return
        if self.workers == 1 or len(videos) == 1:
            limit_threads(self.threads, uses_torch(self.cfg))
            curator = VideoCurator(self.cfg, threads=self.threads)
            for video in videos:
                yield curator.curate(video)
            return
        VideoCurator(self.cfg)  # a bad config fails here, once, instead of in every worker the pool respawns
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(self.workers, len(videos)), initializer=_init_worker, initargs=(self.cfg, self.threads),
                          maxtasksperchild=self.max_tasks) as pool:
            yield from pool.imap_unordered(_curate_in_worker, videos)
