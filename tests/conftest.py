"""Shared fixtures: an isolated cache folder and a small synthetic corpus made once per test session."""

import os

import pytest

from lightning_svd.synthetic import CorpusSpec, ensure_corpus

SMALL_CORPUS = CorpusSpec(num_videos=6, seed=7)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep every test's cache (corpus, statistics) out of the user's home folder."""
    cache = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("LIGHTNING_SVD_CACHE")
    os.environ["LIGHTNING_SVD_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("LIGHTNING_SVD_CACHE", None)
    else:
        os.environ["LIGHTNING_SVD_CACHE"] = previous


@pytest.fixture(scope="session")
def small_corpus_spec() -> CorpusSpec:
    return SMALL_CORPUS


@pytest.fixture(scope="session")
def small_corpus(isolated_cache):
    """Six synthetic videos with ground-truth sidecars (about a second to make)."""
    return ensure_corpus(SMALL_CORPUS, isolated_cache, progress=False)
