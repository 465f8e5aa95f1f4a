"""Callbacks from the experiment's `callbacks:` section (see experiments/defaults.yaml); the train task's only
entry into this package."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from lightning_svd.errors import UserError
from lightning_svd.evaluation.extractors import VideoFeatureExtractor, build_extractor

from .fvd import FVDEvaluation
from .hparams import HParamsLogging
from .preference import PreferenceSamples
from .samples import SampleLogging

HPARAM_SECTIONS = ("experiment", "profile", "seed", "init_from", "train", "trainer")


def extractor_from_section(section: Mapping) -> VideoFeatureExtractor:
    """`section.kind` picks the extractor; its settings are the sub-section of that name."""
    section = OmegaConf.to_container(section, resolve=True) if not isinstance(section, dict) else section
    kind = section.get("kind")
    if kind not in section or not isinstance(section[kind], dict):
        choices = [k for k, v in section.items() if isinstance(v, dict)]
        raise UserError(f"feature extractor kind {kind!r} has no settings section; choose one of {', '.join(choices)}")
    return build_extractor({"kind": kind, **section[kind]})


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def build_callbacks(cfg, run_dir: str | Path) -> list:
    """The enabled callbacks in the order they must run at the end: generators first, hyperparameters last."""
    section, built, sources = cfg.callbacks, [], []
    fvd = section.fvd
    if fvd.enabled:
        evaluation = FVDEvaluation(
            extractor_from_section(fvd.extractor), run_dir, cfg.cache_dir, every_n_steps=int(fvd.every_n_steps),
            num_clips=int(fvd.num_clips), batch_size=int(fvd.batch_size), seed=int(fvd.seed),
            steps=_optional_int(fvd.steps), at_end=bool(fvd.at_end))
        built.append(evaluation)
        sources.append(evaluation)
    samples = section.samples
    if samples.enabled:
        built.append(SampleLogging(
            run_dir, int(samples.every_n_steps), list(samples.prompts), int(samples.count), int(samples.fps),
            seed=int(samples.seed), steps=_optional_int(samples.steps), num_frames=_optional_int(samples.num_frames),
            write_mp4=bool(samples.mp4), at_end=bool(samples.at_end)))
    preference = section.preference
    if preference.enabled:
        built.append(PreferenceSamples(
            run_dir, list(preference.prompts), str(preference.arm or cfg.experiment), int(preference.fps),
            every_n_steps=int(preference.every_n_steps), seed=int(preference.seed),
            steps=_optional_int(preference.steps), num_frames=_optional_int(preference.num_frames)))
    if section.hparams.enabled:
        params = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
                  for key in HPARAM_SECTIONS if key in cfg}
        built.append(HParamsLogging(params, sources))
    return built
