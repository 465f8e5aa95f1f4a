"""Every bad input is refused in one line: config values before the run dir exists, a full disk while a task writes
(rerunning resumes), a last.ckpt cut short, a file where the run dir should be."""

import errno
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lightning_svd.cli import main
from lightning_svd.config import list_experiments, load_config
from lightning_svd.config_checks import INPUTS, RANGES, Range, check_ranges
from lightning_svd.errors import UserError
from lightning_svd.stages.checkpoints import check_resumable

FAST_CURATION = ["curation.clip.enabled=false", "curation.progress=false", "curation.workers=1"]


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def no_space(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment=curate", "data.source=/nonexistent"], "data.source=/nonexistent does not exist"),
        (["experiment=curate", "curation.shard_size=-4"], "curation.shard_size must be an integer >= 1"),
        (["experiment=curate", "curation.flow.backend=bogus"], "curation.flow.backend must be"),
        (["experiment=pretrain_video", "trainer.max_steps=-5"], "trainer.max_steps must be -1 or an integer >= 0"),
        (["experiment=pretrain_video", "init_from=/nonexistent.ckpt"], "init_from=/nonexistent.ckpt does not exist"),
        (["experiment=preference_study", "study.pack=/nonexistent"], "study pack /nonexistent has no manifest.json"),
        (["experiment=preference_study", "study.port=99999"], "study.port must be an integer between 0 and 65535"),
        (["experiment=preference_study", "study.votes_per_pair=0"], "study.votes_per_pair must be an integer"),
        (["experiment=curate", "curation.workers=-3"], "curation.workers must be an integer >= 0 (0: one per CPU"),
        (["experiment=curate", "curation.decode.max_frame_pixels=0"], "curation.decode.max_frame_pixels must be"),
        (["experiment=pretrain_video", "train.data.batch_size=-2"], "train.data.batch_size must be an integer >= 1"),
        (["experiment=ablation_aesthetic", "ablation.proxy.train.data.batch_size=0"],
         "the proxies' config (ablation.proxy and the blocks and overrides over it): train.data.batch_size must be"),
        (["experiment=ablation_aesthetic", "ablation.proxy.trainer.precision=bf17-mixed"],
         "the proxies' config (ablation.proxy and the blocks and overrides over it): trainer.precision must be one of "
         "32-true, bf16-mixed"),
        (["experiment=ablation_aesthetic", "corpus.shape_scale=5"],
         "corpus.shape_scale must be a number in [0.25, 3] (1: radius 7-14 px)"),
        (["experiment=ablation_aesthetic", "ablation.image_init.corpus.num_videos=0"],
         "ablation.image_init.corpus.num_videos must be an integer >= 1 (the image model's own corpus)"),
        (["experiment=ablation_aesthetic", "ablation.sampling.samples_per_prompt=0"],
         "ablation.sampling.samples_per_prompt must be an integer >= 1 (videos per prompt and seed)"),
        (["experiment=ablation_aesthetic",
          "ablation.extra_proxy_overrides=[train.diffusion.sampling.shared_frame_noise=1.5]"],
         "diffusion.sampling.shared_frame_noise must be in [0, 1)"),
    ],
)
def test_a_bad_config_value_exits_2_with_one_line_and_no_run_dir(capsys, tmp_path, args, message):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, *args, f"run_dir={run_dir}")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not run_dir.exists()


@pytest.mark.parametrize(("where", "message"), [("run_dir={f}", "run_dir={f} is a file"),
                                                ("run_dir={f}/sub", "run_dir={f}/sub lies under the file {f}"),
                                                ("runs_root={f}", "runs_root={f} is a file")])
def test_a_file_where_the_run_dir_goes_is_refused_in_one_line(capsys, tmp_path, where, message):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "experiment=synthetic_corpus", where.format(f=blocker))
    assert code == 2 and err.count("\n") == 1 and message.format(f=blocker) in err
    assert blocker.read_text() == "x" and sorted(tmp_path.iterdir()) == [blocker]


def test_a_range_describes_itself_and_allows_what_it_says():
    steps = Range(0, also=(-1,), note="-1: no limit")
    assert steps.describe() == "-1 or an integer >= 0 (-1: no limit)"
    assert all(steps.allows(v) for v in (-1, 0, 7)) and not any(steps.allows(v) for v in (-2, 1.5, True, None, "3"))
    rate = Range(0, 1, integer=False)
    assert rate.describe() == "a number in [0, 1]" and rate.allows(0.5) and rate.allows(1) and not rate.allows(1.01)
    lr = Range(0, integer=False, above=True)
    assert lr.describe() == "a number > 0" and not lr.allows(0.0) and lr.allows(1e-9)
    threads = Range(1, optional=True)
    assert threads.describe() == "null or an integer >= 1" and threads.allows(None) and not threads.allows(0)


def test_every_offending_key_is_named_in_one_message_and_absent_keys_are_skipped():
    cfg = OmegaConf.create({"curation": {"workers": -1, "shard_size": 0}, "train": {"ema": {"decay": 0.5}}})
    with pytest.raises(UserError) as caught:
        check_ranges(cfg)
    assert str(caught.value).count("must be") == 2 and "curation.workers" in str(caught.value)
    check_ranges(OmegaConf.create({"unrelated": -5}))


def test_every_checked_key_exists_in_some_experiment():
    """A renamed key must not leave its rule checking nothing."""
    missing = {*RANGES, *INPUTS}
    for name in sorted(list_experiments(), key=lambda name: name != "curate"):
        cfg = load_config(name, "tiny", check_paths=False)
        missing = {key for key in missing if OmegaConf.select(cfg, key, default="absent") == "absent"}
        if not missing:
            break
    assert not missing


def test_print_config_looks_at_no_path(capsys):
    code, out, _ = run_cli(capsys, "experiment=curate", "data.source=/nonexistent", "--print-config")
    assert code == 0 and "source: /nonexistent" in out


def test_a_full_disk_while_curating_says_where_and_a_rerun_resumes(capsys, tmp_path, small_corpus, monkeypatch):
    import lightning_svd.curation.table as table

    write_table = table.pq.write_table
    monkeypatch.setattr(table.pq, "write_table", lambda data, path, **kw: (_ for _ in ()).throw(no_space(path)))
    args = ["experiment=curate", f"run_dir={tmp_path / 'run'}", f"data.source={small_corpus / 'videos'}",
            "curation.max_videos=1", *FAST_CURATION]
    code, _, err = run_cli(capsys, *args)
    partial = tmp_path / "run" / "clips" / ".part-00000.parquet.partial"
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1] == (f"error: no space left on the device writing {partial}; free some space, then "
                                    "run the same command again to resume")
    monkeypatch.setattr(table.pq, "write_table", write_table)
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert (tmp_path / "run" / "clips" / "part-00000.parquet").is_file()


def test_a_full_disk_inside_a_worker_stops_the_curation_instead_of_making_an_error_row(monkeypatch):
    from lightning_svd.curation.pipeline import VideoCurator

    curation = OmegaConf.to_container(load_config("curate", "tiny", FAST_CURATION).curation, resolve=True)
    curator = VideoCurator(curation)
    monkeypatch.setattr(curator, "_curate", lambda path, seconds: (_ for _ in ()).throw(no_space(path)))
    with pytest.raises(OSError, match="No space left"):
        curator.curate("a.mp4")
    monkeypatch.setattr(curator, "_curate", lambda path, seconds: (_ for _ in ()).throw(OSError(errno.EIO, "bad")))
    assert curator.curate("a.mp4").rows[0]["status"] == "error"


def test_a_full_disk_while_training_says_where_and_which_run_dir_resumes(capsys, tmp_path, small_corpus, monkeypatch):
    """Lightning's checkpoint write fails; the message names the default run dir to give back for the resume."""
    from lightning.fabric.plugins.io import torch_io

    from data_modules.corpus_table import write_corpus_clip_table

    table = write_corpus_clip_table(small_corpus, tmp_path / "clips.parquet")
    monkeypatch.setattr(torch_io, "_atomic_save", lambda checkpoint, path: (_ for _ in ()).throw(no_space(path)))
    code, _, err = run_cli(capsys, "experiment=pretrain_video", f"runs_root={tmp_path / 'runs'}",
                           f"train.data.table={table}", "trainer.max_steps=1", "train.num_frames=2",
                           "callbacks.samples.enabled=false", "trainer.enable_progress_bar=false")
    (run_dir,) = (tmp_path / "runs" / "pretrain_video").iterdir()
    assert code == 1 and "Traceback" not in err
    last = run_dir / "checkpoints" / "last.ckpt"
    assert err.splitlines()[-1] == (f"error: no space left on the device writing {last}; free some space, then run "
                                    f"the same command again with run_dir={run_dir} to resume")


def test_a_full_disk_behind_another_error_is_still_told_in_one_line(capsys, tmp_path, monkeypatch):
    def task(cfg, ctx):
        try:
            raise no_space(ctx.run_dir / "shard.bin")
        except OSError as error:
            raise RuntimeError("write failed") from error

    monkeypatch.setattr("lightning_svd.tasks.get_task", lambda name: task)
    code, _, err = run_cli(capsys, "experiment=synthetic_corpus", f"run_dir={tmp_path / 'run'}")
    assert code == 1 and err.splitlines()[-1].startswith(f"error: no space left on the device writing {tmp_path}")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"])
def test_resuming_from_a_broken_last_ckpt_is_refused_in_one_line(capsys, tmp_path, content):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(content)
    code, _, err = run_cli(capsys, "experiment=pretrain_video", f"run_dir={tmp_path / 'run'}")
    assert code == 2 and err.count("\n") == 1
    assert f"cannot resume: {folder / 'last.ckpt'} is {'empty' if not content else 'cut short'}" in err
    assert err.rstrip().endswith("delete it (or set resume=false) to start over")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]


def test_a_broken_last_ckpt_names_the_earlier_checkpoints_to_resume_from(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "step-50.ckpt")
    assert check_resumable(tmp_path / "step-50.ckpt") == tmp_path / "step-50.ckpt"
    (tmp_path / "last.ckpt").write_bytes((tmp_path / "step-50.ckpt").read_bytes()[:100])
    with pytest.raises(UserError, match=r"copy an earlier one \(step-50.ckpt\) over it to resume from there"):
        check_resumable(Path(tmp_path / "last.ckpt"))
