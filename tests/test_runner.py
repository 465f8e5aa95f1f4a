"""The experiment runner: composition order, every experiment config, errors (exit 2, nothing written), run dirs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from lightning_svd.cli import main
from lightning_svd.config import EXPERIMENTS_DIR, list_experiments, load_config, required_paths
from lightning_svd.errors import UserError
from lightning_svd.run_context import create_run
from lightning_svd.tasks import TASKS, get_task

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(list_experiments())


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_every_experiment_resolves_in_both_profiles(experiment, profile, tmp_path):
    """In the paper profile every required path is reported missing in one message, then given a dummy file, as a
    user with real weights would (those of a config the experiment runs, e.g. an ablation's curation, through the
    override list that sets them)."""
    cfg = load_config(experiment, profile, check_paths=False)
    required = required_paths(cfg) if profile == "paper" else []
    if required:
        with pytest.raises(UserError) as error:
            load_config(experiment, profile)
        message = str(error.value)
        assert f"missing {len(required)}:" in message and all(key in message for key, _, _ in required)
    overrides, nested = [], {}
    for key, _, where in required:
        dummy = tmp_path / key.replace(".", "_")
        dummy.write_text("dummy")
        if where is None:
            overrides.append(f"{key}={dummy}")
        else:
            nested.setdefault(where, []).append(f"{key}={dummy}")
    overrides += [f"{where}=[{', '.join(items)}]" for where, items in nested.items()]
    cfg = load_config(experiment, profile, overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["experiment"] == experiment and resolved["profile"] == profile
    assert resolved["description"] and "\n" not in resolved["description"]
    assert resolved["task"] in TASKS, f"{experiment}: task {resolved['task']} is not registered"


def test_every_registered_task_has_a_run_function():
    for name in TASKS:
        assert callable(get_task(name))


def test_layers_merge_in_order(tmp_path):
    """defaults < profile < experiment < experiment's profile block < command line."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "defaults.yaml").write_text("experiment: ''\nprofile: tiny\ntask: corpus\ndescription: ''\n"
                                            "requires_paths: []\na: 1\nb: 1\nc: 1\nd: 1\n")
    (tmp_path / "profiles" / "tiny.yaml").write_text("b: 2\nc: 2\nd: 2\n")
    (tmp_path / "exp.yaml").write_text("description: x\nc: 3\nd: 3\nprofile_overrides:\n  tiny:\n    d: 4\n")
    cfg = load_config("exp", "tiny", ["a=5"], root=tmp_path)
    assert (cfg.a, cfg.b, cfg.c, cfg.d) == (5, 2, 3, 4)
    assert "profile_overrides" not in cfg


def test_help_lists_every_experiment_with_its_description(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name, description in list_experiments().items():
        assert any(line.split() and line.split()[0] == name and description in line for line in out.splitlines())


def test_print_config_prints_the_resolved_config_and_runs_nothing(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "experiment=synthetic_corpus", f"runs_root={tmp_path}", "seed=5", "--print-config")
    assert code == 0
    printed = yaml.safe_load(out)
    assert printed["seed"] == 5 and printed["task"] == "corpus"
    assert "${" not in out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment=no_such_thing"], "unknown experiment 'no_such_thing'; valid experiments: "),
        (["experiment=synthetic_corpus", "corpus.num_video=3"], "did you mean 'corpus.num_videos'?"),
        (["experiment=synthetic_corpus", "trainer.max_step=3"], "did you mean 'trainer.max_steps'?"),
        (["experiment=synthetic_corpus", "corpus.num_videos=many"], "corpus.num_videos expects an integer, got 'many'"),
        (["experiment=synthetic_corpus", "corpus.min_seconds=abc"], "corpus.min_seconds expects a number"),
        (["experiment=synthetic_corpus", "trainer.enable_progress_bar=2"], "expects true or false"),
        (["experiment=synthetic_corpus", "profile=huge"], "unknown profile 'huge'; valid profiles: paper, tiny"),
        (["experiment=synthetic_corpus", "corpus=3"], "'corpus' is a section"),
        (["experiment=synthetic_corpus", "--fast"], "unknown option '--fast'"),
        (["corpus.num_videos=2"], "no experiment given"),
        (["experiment=synthetic_corpus", "nonsense"], "overrides look like key=value"),
        (["experiment=ablation_captions", "ablation.captions.sources=[blip]"], "unknown caption source 'blip'"),
        (["experiment=ablation_aesthetic", "ablation.criterion=beauty"], "unknown ablation.criterion 'beauty'"),
        (["experiment=ablation_aesthetic", "trainer.max_steps=5"], "settings in ablation.extra_proxy_overrides"),
        (["experiment=ablation_aesthetic", "ablation.extra_proxy_overrides=[train.data.strides=[1]]"],
         "cannot read the value of ablation.extra_proxy_overrides"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path, args, message):
    code, out, err = run_cli(capsys, *args, f"runs_root={tmp_path}")
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_valid_choices_are_listed_for_an_unknown_experiment(capsys, tmp_path):
    _, _, err = run_cli(capsys, "experiment=nope", f"runs_root={tmp_path}")
    for name in EXPERIMENTS:
        assert name in err


def test_trainer_keys_pass_through_to_lightning(tmp_path):
    cfg = load_config("synthetic_corpus", "tiny", ["trainer.limit_val_batches=2", "trainer.strategy=ddp",
                                                   "trainer.max_steps=2"])
    assert cfg.trainer.limit_val_batches == 2 and cfg.trainer.strategy == "ddp" and cfg.trainer.max_steps == 2
    from lightning import Trainer

    trainer = Trainer(**{**OmegaConf.to_container(cfg.trainer), "strategy": "auto", "logger": False,
                         "default_root_dir": str(tmp_path), "enable_checkpointing": False})
    assert trainer.max_steps == 2


def write_experiment_tree(root: Path, defaults: str, requires_paths: str) -> None:
    """A minimal experiments folder: defaults with `defaults` added, an empty paper profile, and `exp.yaml`."""
    (root / "profiles").mkdir()
    (root / "defaults.yaml").write_text(
        "experiment: ''\nprofile: tiny\ntask: corpus\ndescription: ''\nrequires_paths: []\n" + defaults)
    (root / "profiles" / "paper.yaml").write_text("{}\n")
    (root / "exp.yaml").write_text(f"description: x\nrequires_paths: {requires_paths}\n")


def test_paper_profile_reports_every_missing_path_at_once(tmp_path):
    write_experiment_tree(tmp_path, "weights:\n  sd21: ???\n  clip: null\ndata:\n  source: /definitely/not/here\n",
                          "[weights.sd21, weights.clip, data.source]")
    with pytest.raises(UserError) as error:
        load_config("exp", "paper", root=tmp_path)
    text = str(error.value)
    assert "missing 3" in text
    for part in ("weights.sd21 (not set)", "weights.clip (not set)", "data.source=/definitely/not/here (not found)"):
        assert part in text
    present = tmp_path / "sd21.safetensors"
    present.write_text("x")
    with pytest.raises(UserError, match="missing 2"):
        load_config("exp", "paper", [f"weights.sd21={present}"], root=tmp_path)


def test_a_conditional_required_path_is_checked_only_while_its_flag_is_true(tmp_path):
    write_experiment_tree(tmp_path, "image: {every_arm: true, checkpoint: null}\n",
                          "[{path: image.checkpoint, when: image.every_arm}]")
    with pytest.raises(UserError, match="missing 1: image.checkpoint \\(not set\\)"):
        load_config("exp", "paper", root=tmp_path)
    assert load_config("exp", "paper", ["image.every_arm=false"], root=tmp_path).image.checkpoint is None


def test_every_experiment_file_only_uses_known_top_level_sections():
    """Experiments state only what differs; a stray top-level typo would silently be a new key."""
    defaults = yaml.safe_load((EXPERIMENTS_DIR / "defaults.yaml").read_text())
    for name in EXPERIMENTS:
        data = yaml.safe_load((EXPERIMENTS_DIR / f"{name}.yaml").read_text())
        assert "description" in data, name
        assert not set(data) & {"experiment", "profile"}, f"{name} sets a runner key"
        assert load_config(name).task, f"{name} sets no task (itself or through its blocks)"
        assert set(defaults) >= {"seed", "run_dir", "trainer"}


def test_blocks_are_composed_before_the_experiment_and_profile_sections_after_every_base(tmp_path):
    """A shared block is merged after the profile and before the experiment, which states only what differs; the
    blocks' profile sections, then the experiment's, come after every base (a block's paper numbers override an
    experiment's tiny ones). An unknown block is a one-line error naming the valid ones."""
    write_experiment_tree(tmp_path, "c: 1\nd: 1\ne: 1\n", "[]")
    (tmp_path / "profiles" / "tiny.yaml").write_text("{}\n")
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "shared.yaml").write_text(
        "c: 5\nd: 5\ne: 5\nprofile_overrides:\n  tiny:\n    d: 6\n    e: 6\n  paper:\n    d: 7\n")
    (tmp_path / "exp.yaml").write_text(
        "description: x\nblocks: [shared]\nc: 8\nd: 8\nprofile_overrides:\n  tiny:\n    e: 9\n")
    cfg = load_config("exp", "tiny", root=tmp_path)
    assert (cfg.c, cfg.d, cfg.e) == (8, 6, 9) and "blocks" not in cfg
    assert load_config("exp", "paper", root=tmp_path).d == 7
    (tmp_path / "exp.yaml").write_text("description: x\nblocks: [missing]\n")
    with pytest.raises(UserError, match="unknown block 'missing'; valid blocks: shared"):
        load_config("exp", "tiny", root=tmp_path)


def test_a_run_writes_its_directory(tmp_path):
    """Through the real entry point: config.yaml, run.log, tensorboard events, results, the task's own output."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "run.py", "experiment=synthetic_corpus", f"run_dir={run_dir}", "corpus.num_videos=2",
         "corpus.seed=11", "seed=3"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["seed"] == 3 and saved["corpus"]["num_videos"] == 2
    assert "done" in (run_dir / "run.log").read_text()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["videos"] == 2 and results["scenes"] >= 4
    assert (run_dir / "results.md").read_text().startswith("# Synthetic corpus")
    assert (run_dir / "contact_sheet.png").stat().st_size > 1000


def test_an_interrupt_exits_130_with_one_line_saying_how_to_resume(capsys, tmp_path, monkeypatch):
    def interrupted(cfg, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr("lightning_svd.tasks.get_task", lambda name: interrupted)
    code, _, err = run_cli(capsys, "experiment=synthetic_corpus", f"run_dir={tmp_path / 'run'}")
    assert code == 130
    assert err.splitlines()[-1] == "interrupted: run the same command again to resume where it stopped"
    assert "Traceback" not in err
    assert (tmp_path / "run" / "config.yaml").is_file()  # the run dir stays for the resume
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = run_cli(capsys, "experiment=synthetic_corpus", f"runs_root={tmp_path / 'runs'}")
    [run_dir] = (tmp_path / "runs" / "synthetic_corpus").iterdir()
    assert code == 130 and err.splitlines()[-1] == (
        f"interrupted: run the same command again with run_dir={run_dir} to resume where it stopped")


def test_default_run_dir_is_runs_experiment_timestamp(tmp_path):
    result = subprocess.run(
        [sys.executable, "run.py", "experiment=synthetic_corpus", f"runs_root={tmp_path}", "corpus.num_videos=1",
         "corpus.seed=11"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "synthetic_corpus").iterdir()
    assert len(run_dir.name) == len("20261125-120000") and (run_dir / "config.yaml").is_file()


def test_ddp_worker_ranks_join_the_first_ranks_run_dir(tmp_path, monkeypatch):
    """Lightning relaunches the command for local ranks > 0; they must write into rank 0's timestamped folder."""
    from lightning_svd.run_context import RUN_DIR_ENV

    cfg = load_config("synthetic_corpus", "tiny", [f"runs_root={tmp_path}"])
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    first = create_run(cfg)
    first.close()
    assert first.run_dir.parent == tmp_path / "synthetic_corpus"
    monkeypatch.setenv("LOCAL_RANK", "1")
    worker = create_run(cfg)
    worker.close()
    assert worker.run_dir.resolve() == first.run_dir.resolve()
    monkeypatch.setenv("LOCAL_RANK", "0")
    again = create_run(cfg)
    again.close()
    assert again.run_dir != first.run_dir


def test_a_float_in_exponent_form_without_a_dot_is_a_number():
    cfg = load_config("pretrain_video", "tiny", ["train.optimizer.lr=2e-3"])
    assert cfg.train.optimizer.lr == 0.002


def test_a_run_context_closes_its_log_files_when_its_with_block_ends(tmp_path):
    cfg = load_config("synthetic_corpus", "tiny", [f"run_dir={tmp_path / 'run'}"])
    with create_run(cfg) as ctx:
        ctx.log.info("inside")
        assert ctx.log.handlers
    assert not ctx.log.handlers and "inside" in (tmp_path / "run" / "run.log").read_text()


def test_a_free_form_section_takes_new_keys_from_the_command_line():
    """`train.unet.options` holds UNetConfig fields over the preset: any of them may be set as a dotted key."""
    cfg = load_config("ablation_proxy", "tiny", ["train.unet.options.model_channels=48"])
    assert cfg.train.unet.options.model_channels == 48
    with pytest.raises(UserError, match="did you mean 'train.unet.options'"):
        load_config("ablation_proxy", "tiny", ["train.unet.optoins.model_channels=48"])
