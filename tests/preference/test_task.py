"""The `study` task through the real config loader and run directory: results, chart, CSV, Ctrl-C, torch-free."""

import json
import os
import select
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.run_context import create_run
from lightning_svd.tasks import study as study_task

REPO = Path(__file__).resolve().parents[2]


def run_study(tmp_path, *overrides):
    cfg = load_config("preference_study", "tiny", [f"run_dir={tmp_path / 'run'}", *overrides])
    with create_run(cfg) as ctx:
        return study_task.run(cfg, ctx), ctx.run_dir


def test_results_from_imported_votes_without_serving(pack_dir, tmp_path):
    votes = tmp_path / "external.csv"
    rows = ["rater,prompt_id,question,left_arm,right_arm,choice"]
    for rater in ("p1", "p2", "p3"):
        for prompt in ("red_ball", "blue_square", "green_orbit"):
            for question in ("quality", "prompt_following"):
                rows += [f"{rater},{prompt},{question},crisp,degraded,left",
                         f"{rater},{prompt},{question},degraded,wobbly,right",
                         f"{rater},{prompt},{question},crisp,wobbly,left"]
    votes.write_text("\n".join(rows) + "\n")
    results, run_dir = run_study(tmp_path, f"study.pack={pack_dir}", "study.serve=false",
                                 f"study.import_csv={votes}", "study.elo.orders=200")
    assert results["votes"]["counted"] == 54 and results["db"] == str(pack_dir / "votes.sqlite")
    aggregate = results["rankings"]["aggregate"]["arms"]
    assert aggregate["crisp"]["elo"] > aggregate["wobbly"]["elo"] > aggregate["degraded"]["elo"]
    assert results["rankings"]["quality"]["lowest_arm"] == "degraded"
    assert all(c["tasks_at_target"] == c["tasks"] == 9 for c in results["coverage"].values())
    assert json.loads((run_dir / "results.json").read_text())["votes"]["counted"] == 54
    markdown = (run_dir / "results.md").read_text()
    assert "## Visual quality (27 votes)" in markdown and "elo_gain.png" in markdown
    assert Image.open(run_dir / "elo_gain.png").size == (1000, 520)
    assert len((run_dir / "votes.csv").read_text().splitlines()) == 55
    again, _ = run_study(tmp_path / "second", f"study.pack={pack_dir}", "study.serve=false",
                         "study.elo.orders=200")
    assert again["votes"]["counted"] == 54, "the votes stay with the pack"


@pytest.mark.parametrize("overrides, message", [
    ([], "study.pack=DIR"),
    (["study.votes_per_pair=0"], "votes_per_pair"),
    (["study.attention_check_rate=2.0"], "attention_check_rate"),
    (["study.elo.orders=0"], "elo.orders"),
    (["study.serve=maybe"], "serve"),
    (["study.results_token=short"], "results_token"),
    (["study.port=70000"], "port"),
    (["study.open_enrollment=maybe"], "open_enrollment"),
    (["study.lease_s=0"], "lease_s"),
    (["study.max_pending_per_address=0"], "max_pending_per_address"),
    (["study.rate_limit.rater_per_minute=0"], "rate_limit.rater_per_minute"),
    (["study.rate_limit.address_per_minute=-1"], "rate_limit.address_per_minute"),
])
def test_bad_settings_are_user_errors(pack_dir, tmp_path, overrides, message):
    if overrides:
        overrides = [f"study.pack={pack_dir}", *overrides]
    with pytest.raises(UserError, match=message):
        run_study(tmp_path, *overrides)


def test_unwritable_database_location_is_a_user_error(pack_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="study.db"):
        run_study(tmp_path, f"study.pack={pack_dir}", "study.serve=false", f"study.db={blocker / 'votes.sqlite'}")


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_py_serves_until_stopped_then_writes_results(pack_dir, tmp_path, stop_signal):
    minted = subprocess.run([sys.executable, "-m", "lightning_svd.preference.raters", "mint", "--pack", str(pack_dir),
                             "stopper"], capture_output=True, text=True, check=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    token = minted.split("?token=")[1].split()[0]
    owner = minted.split("owner token")[1].split(": ")[1].strip()
    process = subprocess.Popen(
        [sys.executable, "run.py", "experiment=preference_study", f"run_dir={tmp_path / 'run'}",
         f"study.pack={pack_dir}", "study.port=0", "study.elo.orders=50", "study.bradley_terry.bootstrap_rounds=50"],
        stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal, even if ours ignores it
    try:
        url, seen = None, []
        while url is None and select.select([process.stderr], [], [], 60)[0]:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "rating page at " in line:
                url = line.split("rating page at ")[1].split()[0].rstrip("/")
        assert url and url.startswith("http://127.0.0.1:"), "".join(seen)
        rater = {"Authorization": f"Bearer {token}"}
        with urllib.request.urlopen(urllib.request.Request(f"{url}/api/next", headers=rater), timeout=30) as response:
            item = json.loads(response.read())
        vote = json.dumps({"pair_id": item["pair_id"], "question": item["question"], "choice": "left"}).encode()
        request = urllib.request.Request(f"{url}/api/vote", data=vote,
                                         headers={"Content-Type": "application/json", **rater})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == {"status": "recorded"}
        with urllib.request.urlopen(f"{url}/api/results?token={owner}", timeout=30) as response:
            assert json.loads(response.read())["votes"]["total"] == 1
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["votes"]["total"] == 1 and results["experiment"] == "preference_study"
    assert (tmp_path / "run" / "elo_gain.png").is_file() and (tmp_path / "run" / "votes.csv").is_file()


def test_the_preference_app_never_imports_torch():
    modules = ["lightning_svd.preference." + name for name in
               ("app", "server", "service", "store", "ranking", "results", "chart", "demo_pack", "attention",
                "simulated")]
    code = (f"import sys\nfor name in {modules + ['lightning_svd.tasks.study']!r}:\n    __import__(name)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
