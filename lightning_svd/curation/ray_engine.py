"""The Ray Data engine (`curation.engine=ray`): the same `VideoCurator` in a pool of Ray actors.

The video list becomes a Ray dataset of paths; `map_batches` runs one curator per actor (built once, like a
local worker) over one video per batch, and results stream back as JSON so the runner writes shards exactly as
with the local engine. `address=None` starts a local Ray instance (`num_cpus` caps it); `"auto"` or
`ray://host:port` joins a running cluster, where every node needs this package and the videos at the same paths.
"""

import json
from collections.abc import Iterator

import numpy as np

from .engines import limit_threads
from .pipeline import VideoCurator, VideoResult, uses_torch


class _CuratorActor:
    def __init__(self, cfg: dict, threads: int):
        limit_threads(threads, uses_torch(cfg))
        self.curator = VideoCurator(cfg, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.curator.curate(str(path)) for path in batch["path"]]
        return {"result": np.array([json.dumps(vars(r)) for r in results], dtype=object)}


class RayEngine:
    def __init__(self, cfg: dict, workers: int = 0, threads_per_worker: int = 1, address: str | None = None,
                 num_cpus: int | None = None):
        self.cfg, self.threads = cfg, threads_per_worker
        self.workers, self.address, self.num_cpus = workers, address, num_cpus

    def _start(self) -> bool:
        """Connect to (or start) Ray; True when this engine started it and so shuts it down afterwards."""
        import ray

        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
        return True

    def run(self, videos: list[str]) -> Iterator[VideoResult]:
        if not videos:
            return
        import ray

        VideoCurator(self.cfg)  # a bad config fails here, before any actor starts
        started = self._start()
        try:
            yield from self._results(ray, videos)
        finally:
            if started:
                ray.shutdown()

    def _results(self, ray, videos: list[str]) -> Iterator[VideoResult]:
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
        dataset = ray.data.from_items([{"path": video} for video in videos]).map_batches(
            _CuratorActor, fn_constructor_args=(self.cfg, self.threads), batch_size=1,
            concurrency=min(workers, len(videos)), num_cpus=self.threads,
        )
        for row in dataset.iter_rows():
            yield VideoResult(**json.loads(row["result"]))
