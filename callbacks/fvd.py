"""FVD during training: the stage's EMA samples against fixed reference clips of its own training data.

The metric (and its feature network) lives in this callback, never on the stage, so it never enters a
checkpoint. Real statistics are computed once and cached under `<cache_dir>/fvd_stats`, keyed by the protocol
(extractor identity, frames, size, which clips). Each evaluation is logged to TensorBoard (`eval/fvd`) and
appended to `<run_dir>/fvd_history.json`; the train task copies `results()` into the run's results.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from lightning_svd.evaluation.extractors import VideoFeatureExtractor
from lightning_svd.evaluation.fvd import FrechetVideoDistance, FVDProtocol, RealStatisticsCache

from .periodic import EveryNSteps
from .reference import ReferenceClips, generate_batched, reference_clips


def _single_process() -> bool:
    return False


class FVDEvaluation(EveryNSteps):
    def __init__(self, extractor: VideoFeatureExtractor, run_dir: str | Path, cache_dir: str | Path,
                 every_n_steps: int, num_clips: int, batch_size: int = 4, seed: int = 0, steps: int | None = None,
                 at_end: bool = True):
        super().__init__(every_n_steps, at_end)
        # Only global rank zero evaluates, so the metric must never wait for the other processes.
        self.metric = FrechetVideoDistance(extractor, reset_real_features=False, sync_on_compute=False,
                                           distributed_available_fn=_single_process)
        self.history_path = Path(run_dir) / "fvd_history.json"
        self.cache = RealStatisticsCache(cache_dir)
        self.num_clips, self.batch_size, self.seed, self.steps = num_clips, batch_size, seed, steps
        self.history: list[dict] = []
        self.reference: ReferenceClips | None = None
        self.protocol: FVDProtocol | None = None

    def _prepare_real(self, trainer, stage) -> None:
        self.reference = reference_clips(trainer.datamodule, self.num_clips)
        videos, clip_ids = self.reference.videos, self.reference.clip_ids
        table = str(getattr(trainer.datamodule, "table", ""))
        real_set = hashlib.sha256(json.dumps([table, clip_ids]).encode()).hexdigest()[:16]
        self.protocol = FVDProtocol(
            extractor=self.metric.extractor.identity(), num_frames=int(videos.shape[1]),
            resolution=(int(videos.shape[3]), int(videos.shape[4])),
            preprocessing="training clips: first rows of the clip table, sample seed = row index, resize and crop",
            num_samples=len(clip_ids), real_set=real_set)
        self.cache.get_or_compute(self.protocol, self.metric, lambda: videos.split(self.batch_size))

    def run(self, trainer, stage) -> None:
        self.metric.to(stage.device)
        if self.reference is None:
            self._prepare_real(trainer, stage)
        started = time.perf_counter()
        generated = generate_batched(stage, self.reference.captions, self.reference, self.seed, self.batch_size,
                                     num_frames=int(self.reference.videos.shape[1]), steps=self.steps)
        self.metric.reset()
        self.metric.update(generated, real=False)
        result = self.metric.result()
        entry = {"step": int(trainer.global_step), "fvd": result["fvd"], "num_real": result["num_real"],
                 "num_fake": result["num_fake"], "seconds": round(time.perf_counter() - started, 3)}
        self.history.append(entry)
        if trainer.logger is not None:
            trainer.logger.log_metrics({"eval/fvd": entry["fvd"]}, step=entry["step"])
            writer = getattr(trainer.logger, "experiment", None)
            if len(self.history) == 1 and hasattr(writer, "add_text"):
                writer.add_text("eval/fvd_features", self.comparability_note(), entry["step"])
        self.history_path.write_text(json.dumps({**self.labels(), "history": self.history}, indent=1))

    def comparability_note(self) -> str:
        """One line beside the eval/fvd curve: which features, and whether the numbers can meet the paper's."""
        labels = self.metric.labels()
        verdict = "comparable with the paper" if labels["comparable"] else f"not comparable: {labels['reason']}"
        return f"{verdict}; features {json.dumps(labels['feature_extractor'], sort_keys=True)}"

    def labels(self) -> dict:
        return {**self.metric.labels(), "protocol": self.protocol.as_dict() if self.protocol else None}

    def summary_metrics(self) -> dict[str, float]:
        return {"eval/fvd": self.history[-1]["fvd"]} if self.history else {}

    def results(self) -> dict:
        labels = self.metric.labels()
        return {"fvd": self.history[-1]["fvd"] if self.history else None, "fvd_history": self.history,
                "fvd_feature_extractor": labels["feature_extractor"], "fvd_comparable": labels["comparable"],
                "fvd_reason": labels["reason"]}
