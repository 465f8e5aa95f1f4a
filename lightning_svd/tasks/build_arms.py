"""Task `build_arms`: the paper's LVD-10M, its threshold arms and LVD-F from a clip table, as files (section 3.3).

clip table (`ablation.clip_table`, or the ablation's cached curation) -> the random subset (`ablation.subset`: seed,
size or fraction, engine) -> one arm per `ablation.removed_fractions` on `ablation.criterion` -> the combined filter
(the paper's four rules, data_modules/arms.py PAPER_RULES) on the subset. Writes into the run dir `subset.parquet`,
`arms/<arm>.parquet` and `lvd_f.parquet` (clip ids and scores, in the table's order), and results.json / results.md:
each arm's size and threshold, Table 1 statistics per set, and how many clips each LVD-F rule removes on its own.
The ablation task draws its subset and arms with the same functions (`random_subset` orders by hash, the members are
the same).

Only the columns the sets need are read. `engine=memory` holds them for the whole table; `streaming` and `ray` hold
the subset (data_modules/subsets.py). Every arm is cut, written and summarised one at a time.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_modules.arms import CRITERIA, PAPER_RULES, RuleCount, combined_filter, removed_count, threshold_cuts
from data_modules.subsets import SubsetSpec, draw_subset
from lightning_svd.clip_table import (
    DURATION_COLUMNS,
    SCORE_COLUMNS,
    STATISTICS_COLUMNS,
    ClipTable,
    TableStatistics,
    model_column,
    table_statistics,
)
from lightning_svd.errors import UserError

SUBSET_FILE, ARMS_DIR, LVD_F_FILE = "subset.parquet", "arms", "lvd_f.parquet"


@dataclass(frozen=True)
class ClipSet:
    """One set written: the subset, an arm, or LVD-F."""

    name: str
    path: str  # relative to the run dir
    num_clips: int
    removed_fraction: float | None  # of the subset (an arm's own; LVD-F's share removed)
    threshold: float | None  # an arm's worst score still kept
    statistics: TableStatistics


@dataclass(frozen=True)
class Seconds:
    subset: float  # from Parquet on disk to the subset in memory
    arms: float
    lvd_f: float
    total: float


@dataclass(frozen=True)
class BuildArmsResult:
    experiment: str
    profile: str
    source_table: str
    criterion: str
    seed: int
    engine: str
    subset: ClipSet
    arms: tuple[ClipSet, ...]
    lvd_f: ClipSet
    lvd_f_rules: tuple[RuleCount, ...]
    score_models: dict[str, list[str]]  # what produced each score (its `<score>_model` values)
    notes: tuple[str, ...]
    seconds: Seconds

    def to_dict(self) -> dict:
        return asdict(self)


def check(cfg) -> None:
    """Settings that would fail after the table is read fail before anything is written."""
    section = cfg.ablation
    if section.criterion not in CRITERIA:
        raise UserError(f"build_arms cuts arms on a score: ablation.criterion must be one of {', '.join(CRITERIA)}, "
                        f"got {section.criterion!r}")
    if len(section.removed_fractions) < 1:
        raise UserError("ablation.removed_fractions must list at least one fraction, e.g. [0.0, 0.125, 0.25, 0.5]")
    for fraction in section.removed_fractions:
        removed_count(float(fraction), 1)
    SubsetSpec.from_config(section.subset)


def source_table(cfg, ctx) -> Path:
    """`ablation.clip_table`, or the ablation's curation of its source (cached, shared with the ablations)."""
    if cfg.ablation.clip_table:
        return Path(str(cfg.ablation.clip_table)).expanduser()
    from lightning_svd.ablation.data import cached_curation
    from lightning_svd.tasks import curate

    return cached_curation(cfg, ctx.log, curate.run)


def statistics_view(table: pa.Table) -> pa.Table:
    """The columns Table 1 statistics read, in one chunk with `video_path` dictionary-encoded once (one chunk, one
    dictionary, and so do its filtered sets), so each set counts its videos by index."""
    pair = next((p for p in DURATION_COLUMNS if set(p) <= set(table.column_names)), ())
    view = table.select(list(dict.fromkeys([*STATISTICS_COLUMNS, *pair, "flow_score"]))).combine_chunks()
    return view.set_column(view.column_names.index("video_path"), "video_path",
                           pc.dictionary_encode(view["video_path"]))


def write_set(table: pa.Table, path: Path) -> None:
    """Atomically; hash ids and scores neither repeat nor compress, so plain pages (no dictionary, no codec) write
    about twice as fast."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial, use_dictionary=False, compression="none")
    partial.replace(path)


def run(cfg, ctx) -> dict:
    check(cfg)
    section = cfg.ablation
    spec = SubsetSpec.from_config(section.subset)
    criterion, run_dir = str(section.criterion), Path(ctx.run_dir)
    table_path = source_table(cfg, ctx)
    started = time.perf_counter()  # from the Parquet on disk to every file written
    source = ClipTable(table_path, setting="ablation.clip_table")
    scores = list(SCORE_COLUMNS)
    source.require([*scores, *STATISTICS_COLUMNS], "the arms, the combined filter and Table 1 read them")
    duration = next((p for p in DURATION_COLUMNS if set(p) <= set(source.columns)), None)
    if duration is None:
        raise UserError(f"clip table {source.path} lacks start_s/end_s or fps for durations (see the clip-table "
                        "contract in SPEC.md)")
    subset = draw_subset(source, [*scores, *STATISTICS_COLUMNS, *duration], spec)
    stats_view, written = statistics_view(subset), ["clip_id", *scores]
    subset_seconds = time.perf_counter() - started
    ctx.log.info(f"subset of {subset.num_rows} clips from {source.path} ({spec.engine} engine, "
                 f"{subset_seconds:.2f} s)")

    def emit(name: str, relative: str, kept: np.ndarray | None, removed: float | None,
             threshold: float | None) -> ClipSet:
        chosen = None if kept is None or kept.all() else pa.array(kept)
        write_set(subset.select(written) if chosen is None else subset.select(written).filter(chosen),
                  run_dir / relative)
        statistics = table_statistics(stats_view if chosen is None else stats_view.filter(chosen), name=name)
        return ClipSet(name, relative, statistics.num_clips, removed, threshold, statistics)

    subset_set = emit("subset", SUBSET_FILE, None, None, None)
    started_arms = time.perf_counter()
    arms = tuple(emit(cut.name, f"{ARMS_DIR}/{cut.name}.parquet", cut.kept, cut.removed_fraction, cut.threshold)
                 for cut in threshold_cuts(subset, criterion, list(section.removed_fractions), spec.seed))
    started_filter = time.perf_counter()
    lvd_f = combined_filter(subset.select(["clip_id", "status", *scores]), PAPER_RULES, spec.seed)
    lvd_f_set = emit("lvd_f", LVD_F_FILE, lvd_f.kept, round(lvd_f.num_removed / max(lvd_f.num_input, 1), 6), None)
    models = {score: source.distinct_values(model_column(score)) for score in scores
              if model_column(score) in source.columns}
    finished = time.perf_counter()
    result = BuildArmsResult(
        experiment=cfg.experiment, profile=cfg.profile, source_table=str(source.path), criterion=criterion,
        seed=spec.seed, engine=spec.engine, subset=subset_set, arms=arms, lvd_f=lvd_f_set, lvd_f_rules=lvd_f.rules,
        score_models=models, notes=tuple(random_weight_notes(models, criterion)),
        seconds=Seconds(round(subset_seconds, 3), round(started_filter - started_arms, 3),
                        round(finished - started_filter, 3), round(finished - started, 3)))
    markdown = render_markdown(result)
    ctx.write_results(result.to_dict(), markdown)
    print(markdown)
    ctx.log.info(f"subset, {len(arms)} arms and LVD-F written to {run_dir} in {finished - started:.2f} s")
    return result.to_dict()


def random_weight_notes(models: dict[str, list[str]], criterion: str) -> list[str]:
    """A score from a network on random weights ranks nothing: say which sets that makes meaningless."""
    notes = []
    for score, producers in models.items():
        random = [p for p in producers if "random" in p]
        if random:
            cut = f"the {criterion} arms and LVD-F's rule on it remove" if CRITERIA[criterion].column == score \
                else "LVD-F's rule on it removes"
            notes.append(f"{score} comes from random weights ({'; '.join(random)}): it ranks nothing, so {cut} "
                         "clips at random")
    return notes


def render_markdown(result: BuildArmsResult) -> str:
    """The sets as the paper's Table 1 rows, with each arm's size and threshold, and the LVD-F rules' counts."""
    from lightning_svd.reporting.dataset_stats import table1_cells

    sets = [result.subset, *result.arms, result.lvd_f]
    cells = [table1_cells(asdict(s.statistics)) for s in sets]
    columns = list(cells[0])
    lines = [f"# {result.experiment}: subset, {result.criterion} arms and LVD-F ({result.profile} profile)", "",
             f"From `{result.source_table}`; subset seed {result.seed}, {result.engine} engine; "
             f"{result.seconds.total:.1f} s.", "",
             "| set | file | removed | threshold | " + " | ".join(columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for clip_set, row in zip(sets, cells):
        removed = "" if clip_set.removed_fraction is None else f"{100 * clip_set.removed_fraction:.4g} %"
        threshold = "" if clip_set.threshold is None else f"{clip_set.threshold:.6g}"
        lines.append(f"| {clip_set.name} | `{clip_set.path}` | {removed} | {threshold} | "
                     + " | ".join(row[c] for c in columns) + " |")
    lines += ["", f"LVD-F: {result.lvd_f.num_clips} of {result.subset.num_clips} clips survive every rule; each rule "
              "on its own removes:", ""]
    lines += [f"- {rule.rule}: {rule.removed}" for rule in result.lvd_f_rules]
    lines += ["", *(f"Note: {note}." for note in result.notes)] if result.notes else []
    return "\n".join(lines) + "\n"
