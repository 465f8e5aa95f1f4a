"""Evaluation: the Fréchet distance and FVD, the UCF-101 zero-shot protocol and the multi-view metrics."""

from .frechet import FeatureStatistics, frechet_distance

__all__ = ["FeatureStatistics", "frechet_distance"]
