"""Run results as the report reads them: each run directory's `results.json`, sorted into what it reports.

What a run contributes is read from its results, not from its experiment's name:
- UCF-101 FVD (Table 2): `"evaluation": "ucf101_fvd"` with `fvd`, `num_samples`, `comparable`, `reason`;
- multi-view (Table 3): `"evaluation": "multiview"` with `lpips`, `psnr`, `clip_s`, `comparable`, `reason`;
- a human-preference study (the `study` task): `rankings` and `arms`;
- a curation ablation (SPEC contract): read as an `AblationResult` (lightning_svd/ablation/results.py);
- a clip table (Table 1): a `clip_table` path.
A run's label is its results' `model` (or `label`), else `<experiment>/<run folder>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..ablation.results import AblationResult
from ..errors import UserError

KINDS = ("ucf101_fvd", "multiview", "study", "ablation")


@dataclass(frozen=True)
class RunResults:
    run_dir: Path
    results: dict
    ablation: AblationResult | None = None

    @property
    def label(self) -> str:
        named = self.results.get("model") or self.results.get("label")
        return str(named) if named else f"{self.results.get('experiment', 'run')}/{self.run_dir.name}"

    @property
    def kinds(self) -> list[str]:
        found = []
        if self.results.get("evaluation") in ("ucf101_fvd", "multiview"):
            found.append(self.results["evaluation"])
        if isinstance(self.results.get("rankings"), dict) and isinstance(self.results.get("arms"), list):
            found.append("study")
        if self.ablation is not None:
            found.append("ablation")
        return found

    @property
    def clip_table(self) -> Path | None:
        path = self.results.get("clip_table")
        if not path:
            return None
        path = Path(path)
        return path if path.is_absolute() else self.run_dir / path


def load_runs(run_dirs: list[str | Path]) -> list[RunResults]:
    """Read every run's results.json; a missing or unreadable file is an error naming the run."""
    runs = []
    for position, run_dir in enumerate(run_dirs):
        run_dir = Path(run_dir).expanduser()
        path = run_dir / "results.json"
        if not path.is_file():
            raise UserError(f"runs[{position}]={run_dir} has no results.json; give run directories of finished runs")
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
        if not isinstance(results, dict):
            raise UserError(f"{path} holds {type(results).__name__}, expected a JSON object")
        runs.append(RunResults(run_dir, results, read_ablation(path, results)))
    return runs


def read_ablation(path: Path, results: dict) -> AblationResult | None:
    """The typed ablation results where `results` holds an ablation, else None; a broken one names its file."""
    if not AblationResult.recognises(results):
        return None
    try:
        return AblationResult.from_dict(results)
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: not an ablation's results as SPEC.md describes them ({error})") from None
