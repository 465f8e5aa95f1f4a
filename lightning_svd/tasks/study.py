"""Task `study`: serve a study pack to human raters, then rank the arms by Elo and Bradley-Terry.

With `study.serve=true` the rating page runs until Ctrl-C; either way the run directory then gets the
rankings (results.json, results.md), the Elo bar chart and every vote as votes.csv. Votes live in a SQLite
file next to the pack by default, so a restarted study keeps every vote cast before.
"""

from pathlib import Path

from omegaconf import OmegaConf

from ..errors import UserError
from ..preference.app import create_app
from ..preference.chart import write_elo_chart
from ..preference.pack import StudyPack
from ..preference.results import render_markdown
from ..preference.server import StudyServer, is_loopback
from ..preference.service import PreferenceStudy
from ..preference.settings import StudySettings
from ..preference.store import DEFAULT_DB_NAME

CHART_NAME = "elo_gain.png"


def settings_and_pack(cfg) -> tuple[dict, StudySettings, StudyPack]:
    """The `study:` section, its checked settings and the loaded pack (each refuses bad input in one line)."""
    section = OmegaConf.to_container(cfg.study, resolve=True)
    settings = StudySettings.from_mapping({**section, "seed": cfg.seed})
    if not isinstance(section["serve"], bool):
        raise UserError(f"study.serve must be true or false, got {section['serve']!r}")
    return section, settings, StudyPack.load(section["pack"])


def check(cfg) -> None:
    """The settings and the pack fail before the run dir exists."""
    settings_and_pack(cfg)


def run(cfg, ctx) -> dict:
    section, settings, pack = settings_and_pack(cfg)
    db_path = Path(section["db"]).expanduser() if section["db"] else pack.root / DEFAULT_DB_NAME
    study = PreferenceStudy.open(pack, db_path, settings)
    ctx.log.info(f"study pack {pack.root}: {len(pack.prompts)} prompts, arms {', '.join(pack.arms)}; "
                 f"votes in {study.store.path}")
    if section["import_csv"]:
        counts = study.import_csv(Path(section["import_csv"]))
        ctx.log.info(f"imported {section['import_csv']}: {counts['recorded']} new votes, {counts['duplicate']} "
                     f"already there, {counts['conflict']} contradicting an earlier answer (kept the earlier)")
    if section["serve"]:
        server = StudyServer(create_app(study), settings.host, settings.port)
        if settings.open_enrollment and not is_loopback(settings.host):
            ctx.log.warning(f"serving an open study on {settings.host}: anyone who can reach this address can rate "
                            "under any free name")
        if not settings.open_enrollment and not study.store.raters():
            ctx.log.warning(f"no rater links yet, so every rater is refused: python -m lightning_svd.preference.raters "
                            f"mint --pack {pack.root} NAME ... (or study.open_enrollment=true)")
        ctx.log.info(f"rating page at {server.url}/  (Ctrl-C stops the study and writes the results)")
        server.serve_until_interrupted()
    results = {"experiment": cfg.experiment, "profile": cfg.profile, "db": str(study.store.path),
               **study.results()}
    write_elo_chart(results, ctx.run_dir / CHART_NAME)
    (ctx.run_dir / "votes.csv").write_text(study.export_csv())
    ctx.write_results(results, render_markdown(results) + f"\n![Elo gain over the lowest arm]({CHART_NAME})\n")
    ctx.log.info(f"{results['votes']['counted']} votes counted; results in {ctx.run_dir}")
    return results
