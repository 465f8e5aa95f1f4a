"""Lightning callbacks: evaluation, sample logging, preference sample collection."""

from .factory import build_callbacks, extractor_from_section
from .fvd import FVDEvaluation
from .hparams import HParamsLogging
from .preference import PreferenceSamples
from .samples import SampleLogging

__all__ = ["FVDEvaluation", "HParamsLogging", "PreferenceSamples", "SampleLogging", "build_callbacks",
           "extractor_from_section"]
