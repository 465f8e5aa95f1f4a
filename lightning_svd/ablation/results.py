"""An ablation's results, typed: the contract of its `results.json` (SPEC.md, "Ablation results").

The task builds an `AblationResult` once and writes `to_dict()`; the report reads it back with `from_dict()`. The
JSON keeps the contract's flat arm keys: each metric over seeds is `<metric>` (the mean) and `<metric>_spread`
(the seed-to-seed sample standard deviation), beside the per-seed values under `seeds`; `notes` is one string,
one note per line. Readers ignore keys they do not know, so older and newer results both load. No torch here:
the report imports this module.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np

SPEC_ARM_KEYS = ("name", "removed_fraction", "num_clips", "threshold", "train_steps", "final_loss", "fvd")
SPEC_KEYS = ("experiment", "criterion", "profile", "arms")


@dataclass(frozen=True)
class Spread:
    """A metric over seeds: the mean and the sample standard deviation (None with fewer than two values)."""

    mean: float | None = None
    sd: float | None = None

    @classmethod
    def over(cls, values) -> "Spread":
        numbers = [float(v) for v in values if v is not None]
        if not numbers:
            return cls()
        sd = round(float(np.std(numbers, ddof=1)), 6) if len(numbers) > 1 else None
        return cls(round(float(np.mean(numbers)), 6), sd)


@dataclass(frozen=True)
class SeedResult:
    """One arm-seed's outcome: its training and the evaluation of its samples."""

    seed: int
    train_steps: int | None = None
    final_loss: float | None = None
    fvd: float | None = None
    degraded_sample_share: float | None = None
    simulated_elo_gain: float | None = None


SEED_METRICS = ("final_loss", "fvd", "degraded_sample_share", "simulated_elo_gain")


@dataclass(frozen=True)
class ArmResult:
    """One arm: which clips it trained on and each metric's mean ± seed spread (per-seed values in `seeds`)."""

    name: str
    removed_fraction: float
    num_clips: int
    threshold: float | None
    train_steps: int | None
    final_loss: Spread
    fvd: Spread
    degraded_sample_share: Spread = Spread()
    simulated_elo_gain: Spread = Spread()   # from simulated raters, over the lowest arm
    degraded_share: float | None = None      # planted-degraded share of the arm's training data
    elo: float | None = None                 # from people's votes in the study pack
    sample_frame_difference: float | None = None
    prompt_colour_distance: float | None = None
    other_prompts_colour_distance: float | None = None
    prompt_following: float | None = None   # share of samples nearest their own prompt's clip in mean colour
    prompt_shapes: float | None = None      # share of sample frames showing a region in their prompt's shape colour
    other_prompts_shapes: float | None = None   # the same for the other prompts' shape colours: the baseline
    seeds: tuple[SeedResult, ...] = ()

    @classmethod
    def over_seeds(cls, seeds: list[SeedResult], **arm) -> "ArmResult":
        """The arm with each metric's mean and spread taken over `seeds`."""
        spreads = {metric: Spread.over(getattr(s, metric) for s in seeds) for metric in SEED_METRICS}
        steps = [s.train_steps for s in seeds if s.train_steps is not None]
        return cls(**arm, **spreads, train_steps=max(steps) if steps else None, seeds=tuple(seeds))

    def to_dict(self) -> dict:
        data = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Spread):
                data[field.name], data[f"{field.name}_spread"] = value.mean, value.sd
            elif field.name == "seeds":
                data["seeds"] = [asdict(seed) for seed in value]
            else:
                data[field.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ArmResult":
        missing = [key for key in SPEC_ARM_KEYS if key not in data]
        if missing:
            raise ValueError(f"arm {data.get('name', '?')!r} lacks {', '.join(missing)}")
        values = {}
        for field in fields(cls):
            if field.name in SEED_METRICS:
                values[field.name] = Spread(data.get(field.name), data.get(f"{field.name}_spread"))
            elif field.name == "seeds":
                values["seeds"] = tuple(SeedResult(**_known(SeedResult, s)) for s in data.get("seeds") or ())
            elif field.name in data:
                values[field.name] = data[field.name]
        return cls(**values)


@dataclass(frozen=True)
class ProxyShape:
    """What the proxies drew: their experiment, frames, size and sampler steps."""

    experiment: str
    num_frames: int
    height: int
    width: int
    sampling_steps: int


@dataclass(frozen=True)
class AblationResult:
    """A whole ablation: its criterion, its arms in order, the notes on what moved, and where its parts are."""

    experiment: str
    criterion: str
    profile: str
    arms: tuple[ArmResult, ...]
    feature_extractor: dict | None = None   # the FVD extractor's identity; None when FVD is off
    notes: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    subset_size: int | None = None
    num_real_clips: int | None = None
    num_real_videos: int | None = None
    real_clips_clean_only: bool | None = None
    heldout_videos: tuple[str, ...] = ()
    prompts: tuple[dict, ...] = ()           # {"id", "text"}, in the order every arm sampled them
    samples_per_prompt: int | None = None
    study_pack: str | None = None
    judge: dict | None = None                # the degradation detector's held-out report
    simulated_raters: dict | None = None     # the simulated panel's settings and label
    clip_table: str | None = None
    image_model: str | None = None
    plot: str | None = None
    sample_grid: str | None = None
    proxy: ProxyShape | None = None

    @staticmethod
    def recognises(data: dict) -> bool:
        """Whether a results.json holds an ablation: a `criterion` and a list of arm objects."""
        arms = data.get("arms")
        return "criterion" in data and isinstance(arms, list) and all(isinstance(a, dict) for a in arms)

    def to_dict(self) -> dict:
        data = {field.name: getattr(self, field.name) for field in fields(self)}
        data["arms"] = [arm.to_dict() for arm in self.arms]
        data["notes"] = "\n".join(self.notes)
        data["proxy"] = None if self.proxy is None else asdict(self.proxy)
        for name in ("seeds", "heldout_videos", "prompts"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AblationResult":
        missing = [key for key in SPEC_KEYS if key not in data]
        if missing:
            raise ValueError(f"an ablation's results lack {', '.join(missing)}")
        values = _known(cls, data)
        values["arms"] = tuple(ArmResult.from_dict(arm) for arm in data["arms"])
        values["notes"] = tuple(str(data.get("notes") or "").splitlines())
        if data.get("proxy") is not None:
            values["proxy"] = ProxyShape(**_known(ProxyShape, data["proxy"]))
        for name in ("seeds", "heldout_videos", "prompts"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def _known(kind, data: dict) -> dict:
    """The entries of `data` that are fields of the dataclass `kind`."""
    names = {field.name for field in fields(kind)}
    return {key: value for key, value in data.items() if key in names}
