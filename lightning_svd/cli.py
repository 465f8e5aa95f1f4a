"""`python run.py experiment=NAME [profile=tiny|paper] [a.b=value ...] [--print-config]`."""

import errno
import sys

from omegaconf import OmegaConf

from .config import list_experiments, list_profiles, load_config
from .errors import UserError

USAGE = "usage: python run.py experiment=NAME [profile=tiny|paper] [key=value ...] [--print-config]"


def help_text() -> str:
    experiments = list_experiments()
    width = max(map(len, experiments), default=0)
    lines = [
        "lightning-svd: the Stable Video Diffusion recipe as a PyTorch Lightning suite.",
        "",
        USAGE,
        "",
        "Loads experiments/defaults.yaml, then experiments/profiles/<profile>.yaml (default tiny), then",
        "experiments/<NAME>.yaml, then each key=value override (OmegaConf dotlist; unknown keys are errors).",
        "Each run writes runs/<experiment>/<timestamp>/ (or run_dir=DIR): config.yaml, run.log, tensorboard/,",
        "results.json, results.md.",
        "",
        f"profiles: {', '.join(list_profiles())}",
        "",
        "experiments:",
    ]
    lines += [f"  {name.ljust(width)}  {description}" for name, description in experiments.items()]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[str, str, list[str], bool]:
    experiment, profile, overrides, print_config = None, "tiny", [], False
    for arg in argv:
        if arg == "--print-config":
            print_config = True
        elif arg.startswith("-"):
            raise UserError(f"unknown option '{arg}'; options are --help and --print-config")
        elif arg.startswith("experiment="):
            experiment = arg.partition("=")[2]
        elif arg.startswith("profile="):
            profile = arg.partition("=")[2]
        else:
            overrides.append(arg)
    if not experiment:
        names = ", ".join(list_experiments())
        raise UserError(f"no experiment given; {USAGE.removeprefix('usage: ')}; experiments: {names}")
    return experiment, profile, overrides, print_config


def disk_full(error: BaseException) -> OSError | None:
    """The "no space left on device" error behind `error` (itself or one it was raised from), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def disk_full_message(error: OSError, cfg, ctx) -> str:
    """Where the disk filled up and how to go on: every task keeps what it finished in its run dir, so the same run
    dir resumes (finished curation shards are skipped, training continues from last.ckpt)."""
    where = error.filename or (ctx.run_dir if ctx is not None else cfg.run_dir or cfg.runs_root)
    return f"no space left on the device writing {where}; free some space, then {resume_hint(cfg, ctx)} to resume"


def resume_hint(cfg, ctx) -> str:
    """The command that resumes: the same one, plus the run dir when it was a fresh timestamped one (a rerun
    without it would start a new folder)."""
    if cfg is None or ctx is None or cfg.run_dir:
        return "run the same command again"
    return f"run the same command again with run_dir={ctx.run_dir}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = ctx = None
    if not argv or "--help" in argv or "-h" in argv:
        print(help_text())
        return 0
    try:
        experiment, profile, overrides, print_config = parse_args(argv)
        cfg = load_config(experiment, profile, overrides, check_paths=not print_config)
        if print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True), end="")
            return 0
        from .quiet import silence_third_party
        from .tasks import check_task, get_task

        silence_third_party()

        task = get_task(cfg.task)
        check_task(cfg)
        from .run_context import create_run, seed_everything

        seed_everything(cfg.seed)
        try:
            ctx = create_run(cfg)
            ctx.log.info(f"{cfg.experiment} ({cfg.profile} profile, task {cfg.task}) -> {ctx.run_dir}")
            task(cfg, ctx)
            ctx.log.info(f"done: {ctx.run_dir}  (tensorboard --logdir {ctx.tensorboard_dir})")
        except Exception as error:
            full = disk_full(error)
            if full is None:
                raise
            print(f"error: {disk_full_message(full, cfg, ctx)}", file=sys.stderr)
            return 1
        finally:
            if ctx is not None:
                ctx.close()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {resume_hint(cfg, ctx)} to resume where it stopped", file=sys.stderr)
        return 130
    return 0
