"""Task `report`: the paper's Table 2 (UCF-101 FVD), Table 3 (multi-view) and Table 1 (dataset statistics)
with our runs' rows beside the paper's, ablation and study tables, and Elo bar charts, as Markdown and PNG.

`python run.py experiment=report runs=DIR` or `runs=[DIR1,DIR2]` reads each run's results.json; clip tables for Table 1
come from `report.clip_tables` and from runs whose results name a `clip_table`.
"""

from omegaconf import OmegaConf

from ..errors import UserError
from ..reporting import build_report, load_runs


def _paths(cfg, key: str) -> list[str]:
    """`key=DIR` (one path) or `key=[DIR1,DIR2]`; empty or unset gives no paths."""
    value = OmegaConf.select(cfg, key)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, str):
        return [value] if value else []
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{key} must be a list of paths, for example {key}=[runs/a/1,runs/b/2]; got {value!r}")
    return value


def run(cfg, ctx) -> dict:
    runs = load_runs(_paths(cfg, "runs"))
    clip_tables = _paths(cfg, "report.clip_tables")
    results, markdown = build_report(runs, clip_tables, ctx.run_dir)
    results = {"experiment": cfg.experiment, "profile": cfg.profile, **results}
    ctx.tensorboard().add_text("report", markdown)
    ctx.write_results(results, markdown)
    ctx.log.info(f"report of {len(runs)} runs ({len(results['charts'])} Elo charts) in {ctx.run_dir / 'results.md'}")
    return results
