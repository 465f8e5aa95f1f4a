"""Curation fixtures: small videos written with PyAV, the `curation` config, and the pipeline run once on a corpus."""

import copy
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightning_svd.config import load_config
from lightning_svd.curation.pipeline import VideoCurator
from lightning_svd.synthetic import CorpusSpec, corpus_videos, ensure_corpus

QUALITY_CORPUS = CorpusSpec()  # the default corpus (24 videos), the one the issue targets are stated on


@pytest.fixture(scope="session")
def curation_cfg() -> dict:
    """The curate experiment's `curation` section (tiny) as plain data, CLIP off (tests of CLIP build their own
    tiny model)."""
    cfg = OmegaConf.to_container(load_config("curate", "tiny").curation, resolve=True)
    cfg["clip"]["enabled"] = False
    cfg["progress"] = False
    return cfg


@pytest.fixture
def cfg_copy(curation_cfg) -> dict:
    return copy.deepcopy(curation_cfg)


@pytest.fixture(scope="session")
def quality_corpus(isolated_cache) -> Path:
    return ensure_corpus(QUALITY_CORPUS, isolated_cache, progress=False)


@pytest.fixture(scope="session")
def quality_results(quality_corpus, curation_cfg):
    """The pipeline's results on every video of the quality corpus (curated once per session)."""
    curator = VideoCurator(curation_cfg)
    return [curator.curate(str(video)) for video in corpus_videos(quality_corpus)]
