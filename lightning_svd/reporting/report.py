"""The whole report: the paper's Tables 1-3 beside ours (Markdown and PNG), ablation and study tables, Elo charts.

Elo bar charts (the paper's Figures 3, 4 and 18) are drawn by the preference package's chart: from a study's
results, per question and pooled with intervals; from an ablation's per-arm Elo (its study votes), one pooled
group without intervals.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..preference.chart import write_elo_chart
from .dataset_stats import clip_table_statistics
from .figures import write_table_image
from .paper import TABLE1, TABLE2, TABLE3
from .runs import RunResults
from .tables import ablation_elo, render_ablation, render_study, table1, table2, table2_rows, table3, table3_rows


def _file_stem(run: RunResults, position: int) -> str:
    return f"{position:02d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", run.label).strip("_")[:60]


def build_report(runs: list[RunResults], clip_tables: list[str | Path], out_dir: Path) -> tuple[dict, str]:
    """Render everything into Markdown, writing the charts into `out_dir`; returns (results, markdown)."""
    by_kind = {kind: [r for r in runs if kind in r.kinds] for kind in ("ucf101_fvd", "multiview", "study",
                                                                      "ablation")}
    tables = [(Path(p).name, Path(p)) for p in clip_tables]
    tables += [(run.label, run.clip_table) for run in runs if run.clip_table is not None]
    statistics = [(label, clip_table_statistics(path)) for label, path in tables]
    sections, figures, charts = [], [], []
    for name, table in (("table2", table2(by_kind["ucf101_fvd"])), ("table3", table3(by_kind["multiview"])),
                        ("table1", table1(statistics))):
        image = write_table_image(table, out_dir / f"{name}.png")
        sections.append(f"{table.markdown()}\n\nAs an image: [{image.name}]({image.name})")
        figures.append(image.name)
    for position, run in enumerate(runs):
        if "ablation" in run.kinds:
            elo = ablation_elo(run)
            chart = write_elo_chart(elo, out_dir / f"elo_{_file_stem(run, position)}.png") if elo else None
            sections.append(render_ablation(run, chart.name if chart else None))
            charts += [chart.name] if chart else []
        if "study" in run.kinds:
            chart = write_elo_chart(run.results, out_dir / f"elo_{_file_stem(run, position)}.png")
            sections.append(render_study(run, chart.name))
            charts.append(chart.name)
    unused = [str(run.run_dir) for run in runs if not run.kinds and run.clip_table is None]
    header = ["# Paper tables beside our runs", "",
              f"Runs: {len(runs)} ({', '.join(f'`{r.run_dir}`' for r in runs) or 'none given: paper rows only'})."]
    if unused:
        header.append(f"Runs with nothing to report (no evaluation, study, ablation or clip table): "
                      f"{', '.join(f'`{u}`' for u in unused)}.")
    results = {
        "runs": [{"run_dir": str(r.run_dir), "label": r.label, "kinds": r.kinds} for r in runs],
        "table1": {"paper": TABLE1, "ours": [{"label": label, **stats} for label, stats in statistics]},
        "table2": {"paper": [{"method": m, "fvd": v} for m, v in TABLE2], "ours": table2_rows(by_kind["ucf101_fvd"])},
        "table3": {"paper": [{"method": m, "lpips": a, "psnr": b, "clip_s": c} for m, a, b, c in TABLE3],
                   "ours": table3_rows(by_kind["multiview"])},
        "ablations": [str(r.run_dir) for r in by_kind["ablation"]],
        "studies": [str(r.run_dir) for r in by_kind["study"]],
        "charts": charts,
        "table_images": figures,
        "unused_runs": unused,
    }
    return results, "\n\n".join(["\n".join(header), *sections]) + "\n"
