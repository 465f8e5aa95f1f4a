"""Reporting: the paper's tables and figures rendered from run results, with the paper's rows beside ours."""

from .report import build_report
from .runs import RunResults, load_runs

__all__ = ["RunResults", "build_report", "load_runs"]
