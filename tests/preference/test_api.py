"""The HTTP API through Flask's test client: the rating flow by rater link, validation, video serving, results,
export/import."""

import csv
import io
import sqlite3
from collections import Counter

import pytest

from lightning_svd.errors import UserError
from lightning_svd.preference.app import create_app
from lightning_svd.preference.assignment import study_tasks


@pytest.fixture
def study(open_study):
    return open_study(attention_check_rate=0.0)


@pytest.fixture
def client(study):
    return create_app(study).test_client()


@pytest.fixture
def cast(client, study, as_rater):
    def cast_vote(rater, pick=lambda item: "left", on=None):
        """Ask for a pair as `rater` (a minted link) and vote on it; returns the item (or the done answer)."""
        on = on or client
        headers = as_rater(study, rater)
        item = on.get("/api/next", headers=headers).get_json()
        if not item.get("done"):
            answer = on.post("/api/vote", headers=headers, json={"pair_id": item["pair_id"],
                                                                 "question": item["question"], "choice": pick(item)})
            assert answer.status_code == 200, answer.get_json()
        return item

    return cast_vote


def test_next_gives_a_pair_with_opaque_video_urls(client, study, as_rater):
    alice = as_rater(study, "alice")
    item = client.get("/api/next", headers=alice).get_json()
    assert set(item) == {"rater", "pair_id", "question", "question_text", "prompt", "left", "right", "progress"}
    assert item["rater"] == "alice"
    assert item["question"] in ("quality", "prompt_following")
    assert item["prompt"] in [p.text for p in study.pack.prompts]
    for side in ("left", "right"):
        url = item[side]["url"]
        assert not any(arm in url for arm in study.pack.arms)
        video = client.get(url)
        assert video.status_code == 200 and video.mimetype == "video/mp4"
        assert b"ftyp" in video.data[:16]
    assert client.get("/api/next", headers=alice).get_json()["pair_id"] == item["pair_id"], "an open pair is resumed"
    assert item["progress"] == {"answered": 0, "more": 17}


def test_vote_is_recorded_once_and_repeats_are_harmless(client, study, as_rater):
    bob = as_rater(study, "bob")
    item = client.get("/api/next", headers=bob).get_json()
    vote = {"pair_id": item["pair_id"], "question": item["question"], "choice": "right"}
    assert client.post("/api/vote", headers=bob, json=vote).get_json() == {"status": "recorded"}
    assert client.post("/api/vote", headers=bob, json=vote).get_json() == {"status": "duplicate"}
    changed = client.post("/api/vote", headers=bob, json={**vote, "choice": "left"})
    assert changed.status_code == 409 and "other way" in changed.get_json()["error"]
    votes = study.votes()
    assert len(votes) == 1 and votes[0].choice == "right" and votes[0].seconds_on_item >= 0
    assert client.get("/api/next", headers=bob).get_json()["pair_id"] != item["pair_id"]


@pytest.mark.parametrize("body, message", [
    ({"question": "quality", "choice": "left"}, "exactly the keys"),
    ({"rater": "a", "pair_id": "x" * 10, "question": "quality", "choice": "left"}, "leave out rater"),
    ({"pair_id": "../etc", "question": "quality", "choice": "left"}, "pair_id"),
    ({"pair_id": 7, "question": "quality", "choice": "left"}, "pair_id"),
    ({"pair_id": "x" * 10, "question": "beauty", "choice": "left"}, "question must be"),
    ({"pair_id": "x" * 10, "question": ["quality"], "choice": "left"}, "question must be"),
    ({"pair_id": "x" * 10, "question": {"quality": 1}, "choice": "left"}, "question must be"),
    ({"pair_id": "x" * 10, "question": "quality", "choice": "tie"}, "choice must be"),
    ({"pair_id": "x" * 10, "question": "quality", "choice": ["left"]}, "choice must be"),
    ({"pair_id": "x" * 10, "question": "quality", "choice": "left", "extra": 1}, "exactly the keys"),
    (["a", "list"], "JSON object"),
])
def test_bad_votes_get_400_with_a_message(client, study, as_rater, body, message):
    answer = client.post("/api/vote", headers=as_rater(study, "a"), json=body)
    assert answer.status_code == 400
    assert message in answer.get_json()["error"]
    assert study.votes() == []


def test_malformed_requests(client, study, as_rater):
    erin = as_rater(study, "erin")
    deep = "[" * 2000 + "]" * 2000
    for data in ("{nope", deep, '{"pair_id": ' + deep + "}", b"\xff\xfe"):
        answer = client.post("/api/vote", headers=erin, data=data, content_type="application/json")
        assert answer.status_code == 400, data[:20]
    assert client.post("/api/vote", headers=erin, data="rater=a", content_type="text/plain").status_code == 400
    assert client.post("/api/vote", headers=erin, data="x" * 10000, content_type="application/json").status_code == 413
    assert client.get("/api/next").status_code == 401, "no link, no pair"
    assert client.get("/api/next", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/api/vote").status_code == 405


def test_pairs_belong_to_their_rater(client, study, as_rater):
    carol, mallory = as_rater(study, "carol"), as_rater(study, "mallory")
    item = client.get("/api/next", headers=carol).get_json()
    stolen = {"pair_id": item["pair_id"], "question": item["question"], "choice": "left"}
    assert client.post("/api/vote", headers=mallory, json=stolen).status_code == 404
    unknown = {"pair_id": "A" * 24, "question": item["question"], "choice": "left"}
    assert client.post("/api/vote", headers=carol, json=unknown).status_code == 404
    other = "quality" if item["question"] == "prompt_following" else "prompt_following"
    mismatch = client.post("/api/vote", headers=carol, json={**stolen, "question": other})
    assert mismatch.status_code == 400 and "asks" in mismatch.get_json()["error"]


@pytest.mark.parametrize("path", [
    "/video/../manifest.json", "/video/..%2Fmanifest.json", "/video/%2e%2e/%2e%2e/etc/passwd",
    "/static/../service.py", "/static/..%2fservice.py", "/static/%2e%2e/pack.py", "/manifest.json",
    "/videos/crisp/red_ball.mp4", "/video/" + "0" * 32, "/video/crisp",
])
def test_nothing_outside_the_served_files_is_reachable(client, path):
    answer = client.get(path)
    assert answer.status_code == 404, path
    assert b"import" not in answer.data and b"prompts" not in answer.data


def test_page_and_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and b"Which video is better?" in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/results").headers["Cache-Control"] == "no-store"


def test_video_byte_ranges(client, study, as_rater):
    url = client.get("/api/next", headers=as_rater(study, "dave")).get_json()["left"]["url"]
    part = client.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100
    assert client.get(url, headers={"Range": "bytes=99999999-"}).status_code == 416


def test_raters_finish_with_every_task_at_target_and_no_repeats(cast, study):
    tasks = study_tasks(study.pack)
    raters = [f"rater{i}" for i in range(5)]
    shown = {rater: [] for rater in raters}
    for _ in range(len(tasks)):
        for rater in raters:
            item = cast(rater)
            if not item.get("done"):
                shown[rater].append(item["pair_id"])
    assert all(cast(rater).get("done") for rater in raters)
    per_task = Counter(v.task for v in study.votes())
    assert set(per_task) == set(tasks) and set(per_task.values()) == {3}
    for rater in raters:
        rated = [v.task for v in study.votes() if v.rater == rater]
        assert len(rated) == len(set(rated)), "a rater never gets the same pair and question twice"
    assert sum(len(s) for s in shown.values()) == 3 * len(tasks)


def test_results_rank_the_degraded_arm_last(client, cast, study, as_owner):
    def prefer_not_degraded(item):
        return "left" if item["left"]["url"] != degraded_url(item) else "right"

    def degraded_url(item):
        degraded_ids = {study.video_ids[key] for key in study.video_ids if key[0] == "degraded"}
        return next((item[s]["url"] for s in ("left", "right") if item[s]["url"].split("/")[-1] in degraded_ids),
                    None)

    for _ in range(20):
        for rater in ("erin", "frank", "grace"):
            cast(rater, prefer_not_degraded)
    results = client.get("/api/results", headers=as_owner(study)).get_json()
    assert set(results["rankings"]) == {"quality", "prompt_following", "aggregate"}
    aggregate = results["rankings"]["aggregate"]
    assert aggregate["lowest_arm"] == "degraded" and aggregate["num_votes"] == 54
    assert aggregate["arms"]["degraded"]["elo_gain"] == 0.0
    for arm in ("crisp", "wobbly"):
        entry = aggregate["arms"][arm]
        assert entry["elo_gain_low"] > 0 and entry["elo_low"] <= entry["elo"] <= entry["elo_high"]
        assert entry["bradley_terry"] > aggregate["arms"]["degraded"]["bradley_terry_high"]
    assert results["coverage"]["quality"]["tasks_at_target"] == 9


def test_failing_attention_checks_excludes_a_rater(open_study, cast, as_owner):
    study = open_study(attention_check_rate=0.9)
    client = create_app(study).test_client()
    degraded_ids = {study.video_ids[key] for key in study.video_ids if key[0].startswith("degraded:")}

    def pick_degraded(item):
        return "left" if item["left"]["url"].split("/")[-1] in degraded_ids else "right"

    for _ in range(12):
        cast("careless", pick_degraded, on=client)
        cast("careful", lambda item: "right" if pick_degraded(item) == "left" else "left", on=client)
    raters = client.get("/api/results", headers=as_owner(study)).get_json()["raters"]
    assert raters["careless"]["attention_checks"] > 0 and raters["careless"]["excluded"]
    assert raters["careful"]["pass_rate"] == 1.0 and not raters["careful"]["excluded"]
    results = study.results()
    assert results["votes"]["from_excluded_raters"] == raters["careless"]["votes"]
    assert results["votes"]["counted"] == raters["careful"]["votes"]


def test_export_then_import_reproduces_the_votes(client, cast, study, open_study, as_owner, tmp_path):
    for _ in range(6):
        for rater in ("henry", "iris"):
            cast(rater, lambda item: "right")
    exported = client.get("/api/export", headers=as_owner(study))
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert len(rows) == 12 and {r["source"] for r in rows} == {"web"}
    csv_path = tmp_path / "votes.csv"
    csv_path.write_text(exported.get_data(as_text=True))

    fresh = open_study("fresh.sqlite", attention_check_rate=0.0)
    assert fresh.import_csv(csv_path) == {"recorded": 12, "duplicate": 0, "conflict": 0}
    assert fresh.import_csv(csv_path) == {"recorded": 0, "duplicate": 12, "conflict": 0}
    assert fresh.results()["rankings"] == study.results()["rankings"]
    assert {entry["identity"] for entry in fresh.results()["raters"].values()} == {"import"}


@pytest.mark.parametrize("row, message", [
    ("r,red_ball,quality,crisp,ghost,left", "must be two different arms"),
    ("r,red_ball,quality,crisp,crisp,left", "must be two different arms"),
    ("r,red_ball,quality,crisp,degraded:wobbly,left", "must be two different arms"),
    ("r,red_ball,quality,crisp,wobbly,tie", "ties are not part"),
    ("r,nowhere,quality,crisp,wobbly,left", "not in the pack"),
    ("r,red_ball,beauty,crisp,wobbly,left", "question"),
    (",red_ball,quality,crisp,wobbly,left", "rater is required"),
])
def test_bad_import_rows_name_their_line(study, tmp_path, row, message):
    path = tmp_path / "external.csv"
    path.write_text("rater,prompt_id,question,left_arm,right_arm,choice\nok,red_ball,quality,crisp,wobbly,left\n"
                    + row + "\n")
    with pytest.raises(UserError, match=f"line 3: .*{message}"):
        study.import_csv(path)
    assert study.votes() == [], "a bad file imports nothing"


def test_import_needs_its_columns(study, tmp_path):
    path = tmp_path / "external.csv"
    path.write_text("rater,choice\na,left\n")
    with pytest.raises(UserError, match="lacks the columns"):
        study.import_csv(path)
    with pytest.raises(UserError, match="cannot read"):
        study.import_csv(tmp_path / "missing.csv")


def test_imported_conflicts_keep_the_first_answer(study, tmp_path):
    path = tmp_path / "external.csv"
    path.write_text("rater,prompt_id,question,left_arm,right_arm,choice\n"
                    "x,red_ball,quality,crisp,wobbly,left\nx,red_ball,quality,wobbly,crisp,left\n"
                    "x,red_ball,quality,wobbly,crisp,right\n")
    assert study.import_csv(path) == {"recorded": 1, "duplicate": 1, "conflict": 1}
    assert [v.winner for v in study.votes()] == ["crisp"]


def test_results_and_export_need_the_owner_token(open_study, as_rater, as_owner):
    study = open_study(attention_check_rate=0.0, results_token="s3cret-token")
    client = create_app(study).test_client()
    owner = as_owner(study)
    for path in ("/api/results", "/api/export"):
        assert client.get(path).status_code == 403
        assert client.get(path, headers={"Authorization": "Bearer wrong-token"}).status_code == 403
        assert client.get(path, headers=as_rater(study, "zoe")).status_code == 403, "a rater cannot unblind arms"
        assert client.get(path, headers=owner).status_code == 200
        assert client.get(path, query_string={"token": owner["Authorization"].split()[1]}).status_code == 200
        assert client.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/api/next", headers=owner).status_code == 401, "the owner token is no rater's link"
    assert "owner token" in create_app(open_study(attention_check_rate=0.0)).test_client().get(
        "/api/results").get_json()["error"]


def test_a_pair_left_open_under_other_settings_is_replaced(open_study, as_rater):
    with_checks = open_study(attention_check_rate=0.9)
    client = create_app(with_checks).test_client()
    yan = as_rater(with_checks, "yan")
    for _ in range(30):
        item = client.get("/api/next", headers=yan).get_json()
        if any(with_checks.video_files[item[s]["url"].split("/")[-1]].parent.name == "attention_checks"
               for s in ("left", "right")):
            break
        client.post("/api/vote", headers=yan, json={"pair_id": item["pair_id"], "question": item["question"],
                                                    "choice": "left"})
    else:
        pytest.fail("no attention check was handed out")
    without_checks = create_app(open_study(attention_check_rate=0.0)).test_client()
    replaced = without_checks.get("/api/next", headers=yan)
    assert replaced.status_code == 200 and replaced.get_json()["pair_id"] != item["pair_id"]


def test_votes_live_in_a_write_ahead_logged_sqlite_file(cast, study):
    cast("wal-rater")
    with sqlite3.connect(study.store.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT rater FROM votes").fetchall() == [("wal-rater",)]
