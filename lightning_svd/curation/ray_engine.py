"""The Ray Data engine (`curation.engine=ray`): the same `VideoCurator` in a pool of Ray actors.

The video list becomes a Ray dataset of paths; `map_batches` runs one curator per actor (built once, like a
local worker) over one video per batch, and results stream back as JSON so the runner writes shards exactly as
with the local engine. `address=None` starts a local Ray instance (`num_cpus` caps it); `"auto"` or
`ray://host:port` joins a running cluster, where every node needs this package and the videos at the same paths.

A lost worker (killed, out of memory, its node gone) costs only its video in flight: Ray restarts the actor and runs
that video again, up to `TASK_RETRIES` times, and only the driver writes shards, once every video of one is in.
"""

import json
import warnings
from collections.abc import Iterator

import numpy as np

from .engines import limit_threads
from .pipeline import VideoCurator, VideoResult, uses_torch

# Retries of one video after its worker died: enough for lost workers, while a video that kills every worker it meets
# stops the run with Ray's error instead of retrying forever (Ray Data's default).
TASK_RETRIES = 3


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
        with warnings.catch_warnings():
            # Ray 2.60 names no parameter for actor restarts and retries; its deprecated remote args still set them
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=DeprecationWarning)
            dataset = ray.data.from_items([{"path": video} for video in videos]).map_batches(
                _CuratorActor, fn_constructor_args=(self.cfg, self.threads), batch_size=1,
                concurrency=min(workers, len(videos)), num_cpus=self.threads,
                max_restarts=-1, max_task_retries=TASK_RETRIES,
            )
        for row in dataset.iter_rows():
            yield VideoResult(**json.loads(row["result"]))
