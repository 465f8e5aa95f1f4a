"""The synthetic video corpus with ground truth: the tiny profile's data and the tests' videos."""

from .corpus import CorpusSpec, corpus_videos, ensure_corpus, load_truth

__all__ = ["CorpusSpec", "corpus_videos", "ensure_corpus", "load_truth"]
