"""What a config value may be, declared once per key and checked as soon as the config is composed.

`RANGES` holds the keys with a clear rule (a numeric range or a choice), `INPUTS` the keys naming something that
must already exist, and `OUTPUTS` the folders a run writes into. The loader checks them before the runner creates
the run dir, so a bad value writes nothing and is reported in one line that names the key, the value and what it may
be. A key that an experiment does not have is skipped. Rules that need a built object (a study pack, the curation
pipeline) are the tasks' own `check(cfg)`.
"""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import UserError

_ABSENT = object()


@dataclass(frozen=True)
class Range:
    """An integer (a number with `integer=False`) from `low` to `high` (`low` excluded with `above`); `also` lists
    values allowed outside the range (-1 for no limit), `optional` allows null; `note` says what values mean."""

    low: float | None = None
    high: float | None = None
    integer: bool = True
    above: bool = False
    also: tuple = ()
    optional: bool = False
    note: str = ""

    def allows(self, value) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, int if self.integer else int | float):
            return False
        if value in self.also:
            return True
        below = self.low is not None and (value <= self.low if self.above else value < self.low)
        return not below and (self.high is None or value <= self.high)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.high is None:
            text = f"{kind} {'>' if self.above else '>='} {self.low}"
        else:
            text = f"{kind} in {'(' if self.above else '['}{self.low}, {self.high}]"
        text = " or ".join([*map(str, self.also), *(["null"] if self.optional else []), text])
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Choice:
    """One of `values`; `note` says what they mean."""

    values: tuple
    note: str = ""

    def allows(self, value) -> bool:
        return value in self.values

    def describe(self) -> str:
        text = "one of " + ", ".join(map(str, self.values))
        return f"{text} ({self.note})" if self.note else text


RANGES = {
    "corpus.num_videos": Range(1),
    "corpus.fps": Range(1),
    "corpus.shape_scale": Range(0.25, 3, integer=False, note="1: radius 7-14 px"),
    "curation.workers": Range(0, note="0: one per CPU core"),
    "curation.threads_per_worker": Range(1),
    "curation.max_tasks_per_worker": Range(1),
    "curation.shard_size": Range(1, note="videos per Parquet part file"),
    "curation.max_videos": Range(1, optional=True, note="null: every video"),
    "curation.decode.analysis_short_side": Range(1),
    "curation.decode.max_frame_pixels": Range(1, note="width x height of the largest frame decoded"),
    "curation.decode.max_analysis_megabytes": Range(1),
    "curation.flow.fps": Range(0, integer=False, above=True),
    "curation.cuts.transnetv2.threshold": Range(0, 1, integer=False, above=True),
    "curation.camera.static_below": Range(0, integer=False, above=True, note="frame short sides per second"),
    "curation.camera.min_share": Range(0.5, 1, integer=False),
    "curation.report.histogram_bins": Range(1),
    "trainer.max_steps": Range(0, also=(-1,), note="-1: no limit"),
    "trainer.num_nodes": Range(1),
    "trainer.accumulate_grad_batches": Range(1),
    "trainer.precision": Choice(("32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true"),
                                note="Lightning's; bf16 wants a GPU or a CPU with bfloat16 instructions"),
    "train.num_frames": Range(1),
    "train.height": Range(1),
    "train.width": Range(1),
    "train.data.batch_size": Range(1, note="clips per batch and process"),
    "train.data.num_workers": Range(0),
    "train.global_batch_size": Range(1, optional=True),
    "train.optimizer.lr": Range(0, integer=False, above=True),
    "train.optimizer.warmup_steps": Range(0),
    "train.ema.decay": Range(0, 1, integer=False),
    "train.text.drop_rate": Range(0, 1, integer=False),
    "train.image.drop_rate": Range(0, 1, integer=False),
    "train.sigma_buckets": Range(1),
    "train.diffusion.sampling.num_steps": Range(1),
    "callbacks.fvd.every_n_steps": Range(1),
    "callbacks.samples.every_n_steps": Range(1),
    "callbacks.preference.every_n_steps": Range(1),
    "ablation.parallel_jobs": Range(1),
    "ablation.prompts.count": Range(1),
    "ablation.sampling.steps": Range(1),
    "ablation.sampling.samples_per_prompt": Range(1, note="videos per prompt and seed"),
    "ablation.heldout.max_clips": Range(1),
    "ablation.heldout.windows_per_clip": Range(1),
    "ablation.judge.steps": Range(1),
    "ablation.image_init.corpus.num_videos": Range(1, note="the image model's own corpus"),
    "ablation.simulated_raters.votes_per_pair": Range(1),
    "ablation.torch_threads": Range(1, optional=True, note="null: torch's default"),
}

# key -> what to give; null means "not used" for every one of them. Existence only, as `requires_paths` checks under
# profile=paper: what the path holds is for the code that reads it (e.g. the curate task's check of data.source).
INPUTS = {
    "data.source": "a folder of videos",
    "init_from": "a stage's .ckpt or run dir, or released weights (.ckpt, .safetensors, a diffusers folder)",
    "train.data.table": "a clip table: a Parquet file or a curation run's clips/ folder",
    "ablation.clip_table": "a clip table: a Parquet file or a curation run's clips/ folder",
}
OUTPUTS = ("run_dir", "runs_root")


def value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)


def check_ranges(cfg: DictConfig) -> None:
    """Every key of `RANGES` the config has holds a value its rule allows; all offenders in one line."""
    problems = [f"{key} must be {rule.describe()}, got {found!r}" for key, rule in RANGES.items()
                if (found := value(cfg, key)) is not _ABSENT and not rule.allows(found)]
    if problems:
        raise UserError("; ".join(problems))


def file_in_the_way(path: Path) -> Path | None:
    """The file that keeps `path` from being, or becoming, a folder (itself or a parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def check_locations(cfg: DictConfig) -> None:
    """What a run reads exists and where it writes can be a folder; all offenders in one line."""
    problems = []
    for key, what in INPUTS.items():
        found = value(cfg, key)
        if found not in (_ABSENT, None, "") and not Path(str(found)).expanduser().exists():
            problems.append(f"{key}={found} does not exist; give {what}")
    for key in OUTPUTS:
        found = value(cfg, key)
        if found in (_ABSENT, None, ""):
            continue
        path = Path(str(found)).expanduser()
        blocker = file_in_the_way(path)
        if blocker is not None:
            where = "is a file" if blocker == path else f"lies under the file {blocker}"
            problems.append(f"{key}={found} {where}; give a folder to write the run in")
    if problems:
        raise UserError("; ".join(problems))
