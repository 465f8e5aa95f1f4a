"""Accountable raters: links minted by the owner (only their hashes stored), no voting as someone else, no
stuffing or pair hoarding under invented names, revocation, open enrolment on request, leases and rate limits."""

import sqlite3

import pytest

from lightning_svd.preference.app import create_app
from lightning_svd.preference.assignment import study_tasks
from lightning_svd.preference.limits import RateLimiter
from lightning_svd.preference.problems import TooManyRequests
from lightning_svd.preference.raters import main as raters_main
from lightning_svd.preference.store import VoteStore


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def minted_links(capsys) -> tuple[dict[str, str], str]:
    """The links and the owner token a `raters mint` printed."""
    lines = capsys.readouterr().out.splitlines()
    links = dict(line.split("\t") for line in lines if "\t" in line)
    owner = [line.rsplit(": ", 1)[1] for line in lines if line.startswith("owner token")]
    return {name: link.split("?token=")[1] for name, link in links.items()}, (owner or [None])[0]


def vote_on(client, headers, item, choice="left", **extra):
    return client.post("/api/vote", headers=headers, json={"pair_id": item["pair_id"], "question": item["question"],
                                                           "choice": choice, **extra})


def test_minted_links_are_printed_once_and_stored_only_as_hashes(pack_dir, capsys):
    raters_main(["mint", "--pack", str(pack_dir), "--url", "http://10.0.0.5:9000", "alice", "bob"])
    out = capsys.readouterr().out
    assert "alice\thttp://10.0.0.5:9000/?token=" in out and "bob\thttp://10.0.0.5:9000/?token=" in out
    tokens = [line.split("?token=")[1] for line in out.splitlines() if "?token=" in line]
    owner = out.split("shown only now): ")[1].strip()
    database = b"".join(path.read_bytes() for path in pack_dir.glob("votes.sqlite*"))
    assert all(secret.encode() not in database for secret in (*tokens, owner)), "only hashes are kept"

    raters_main(["mint", "--pack", str(pack_dir), "carol"])
    assert "owner token" not in capsys.readouterr().out, "the owner token is made once"
    with pytest.raises(SystemExit) as exit_info:
        raters_main(["mint", "--pack", str(pack_dir), "alice"])
    assert exit_info.value.code == 2 and "--reissue" in capsys.readouterr().err
    raters_main(["list", "--pack", str(pack_dir)])
    listing = capsys.readouterr().out
    assert listing.count("\tlink\t") == 3 and "0 votes" in listing
    with pytest.raises(SystemExit):
        raters_main(["mint", "--pack", str(pack_dir / "videos"), "dave"])
    assert "not a study pack" in capsys.readouterr().err


def test_no_one_votes_as_someone_else(open_study, pack_dir, capsys):
    study = open_study(attention_check_rate=0.0)
    client = create_app(study).test_client()
    raters_main(["mint", "--pack", str(pack_dir), "alice", "bob"])
    tokens, _ = minted_links(capsys)
    alice, bob = bearer(tokens["alice"]), bearer(tokens["bob"])
    item = client.get("/api/next", headers=alice).get_json()
    assert item["rater"] == "alice"
    assert vote_on(client, bob, item).status_code == 404, "bob cannot answer alice's pair"
    assert vote_on(client, bob, item, rater="alice").status_code == 400, "nor claim to be alice"
    assert client.get("/api/next", query_string={"rater": "alice"}).status_code == 401
    assert vote_on(client, {}, item, rater="alice").status_code == 401
    assert vote_on(client, bearer("x" * 32), item).status_code == 401
    assert study.votes() == []
    assert vote_on(client, alice, item).status_code == 200
    assert [v.rater for v in study.votes()] == ["alice"]


def test_invented_names_neither_stuff_votes_nor_hoard_pairs(open_study, as_rater):
    """The issue's attacks on the default (link-only) study: 56 sock-puppet votes and 81 reservations."""
    study = open_study(attention_check_rate=0.0)
    client = create_app(study).test_client()
    for index in range(81):
        assert client.get("/api/next", query_string={"rater": f"puppet{index}"}).status_code == 401
    for index in range(56):
        answer = client.post("/api/vote", json={"rater": f"puppet{index}", "pair_id": "A" * 24,
                                                "question": "quality", "choice": "left"})
        assert answer.status_code == 401
    with sqlite3.connect(study.store.path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM issues").fetchone() == (0,)
    assert study.votes() == []
    item = client.get("/api/next", headers=as_rater(study, "real")).get_json()
    assert "pair_id" in item and item["progress"]["more"] == len(study_tasks(study.pack)) - 1


def test_revoked_and_reissued_links(open_study, pack_dir, capsys, as_owner):
    study = open_study(attention_check_rate=0.0)
    client = create_app(study).test_client()
    raters_main(["mint", "--pack", str(pack_dir), "eve", "fred"])
    tokens, _ = minted_links(capsys)
    for name in ("eve", "fred"):
        for _ in range(3):
            item = client.get("/api/next", headers=bearer(tokens[name])).get_json()
            assert vote_on(client, bearer(tokens[name]), item).status_code == 200
    raters_main(["revoke", "--pack", str(pack_dir), "eve"])
    capsys.readouterr()
    revoked = client.get("/api/next", headers=bearer(tokens["eve"]))
    assert revoked.status_code == 403 and "revoked" in revoked.get_json()["error"]
    results = client.get("/api/results", headers=as_owner(study)).get_json()
    assert results["raters"]["eve"]["revoked"] and results["raters"]["eve"]["excluded"]
    assert results["votes"]["counted"] == 3 and results["votes"]["from_excluded_raters"] == 3

    raters_main(["mint", "--pack", str(pack_dir), "--reissue", "fred"])
    new_tokens, _ = minted_links(capsys)
    assert client.get("/api/next", headers=bearer(tokens["fred"])).status_code == 401, "the old link is dead"
    assert client.get("/api/next", headers=bearer(new_tokens["fred"])).get_json()["progress"]["answered"] == 3
    with pytest.raises(SystemExit):
        raters_main(["revoke", "--pack", str(pack_dir), "nobody"])
    assert "no rater with a link" in capsys.readouterr().err


@pytest.mark.parametrize("rater, message", [
    ("", "rater is required"),
    ("r" * 65, "1 to 64"),
    ("a\nb", "printable"),
    ("=cmd()", "start with a letter"),
    (["alice"], "rater is required"),
])
def test_open_enrolment_checks_free_names(open_study, rater, message):
    client = create_app(open_study(open_enrollment=True)).test_client()
    answer = client.post("/api/vote", json={"rater": rater, "pair_id": "A" * 24, "question": "quality",
                                            "choice": "left"})
    assert answer.status_code == 400 and message in answer.get_json()["error"]


def test_open_enrolment_takes_free_names_labels_them_and_protects_links(open_study, as_rater, as_owner):
    study = open_study(attention_check_rate=0.0, open_enrollment=True)
    client = create_app(study).test_client()
    linked = as_rater(study, "gina")
    item = client.get("/api/next", query_string={"rater": "walk-in"}).get_json()
    assert item["rater"] == "walk-in"
    assert vote_on(client, {}, item, rater="walk-in").status_code == 200
    assert vote_on(client, linked, client.get("/api/next", headers=linked).get_json()).status_code == 200
    taken = client.get("/api/next", query_string={"rater": "gina"})
    assert taken.status_code == 403 and "personal link" in taken.get_json()["error"]
    assert vote_on(client, {}, item, rater="gina").status_code == 403
    assert vote_on(client, {}, item, rater="passer-by").status_code == 404, "a vote needs a pair handed out"
    assert set(study.store.raters()) == {"gina", "walk-in"}, "a vote enrols nobody"
    results = client.get("/api/results", headers=as_owner(study)).get_json()
    assert results["raters"]["walk-in"]["identity"] == "open" and results["raters"]["gina"]["identity"] == "link"
    assert results["votes"]["from_open_enrolment"] == 1
    with pytest.raises(Exception, match="open enrolment"):
        study.store.add_link_raters(["walk-in"], 0.0)


def test_open_enrolment_caps_the_pairs_one_address_holds(open_study):
    study = open_study(attention_check_rate=0.0, open_enrollment=True, max_pending_per_address=2)
    client = create_app(study).test_client()
    for index in range(2):
        assert client.get("/api/next", query_string={"rater": f"name{index}"}).status_code == 200
    hoarding = client.get("/api/next", query_string={"rater": "name2"})
    assert hoarding.status_code == 429 and "unanswered pairs" in hoarding.get_json()["error"]
    assert int(hoarding.headers["Retry-After"]) > 0
    assert client.get("/api/next", query_string={"rater": "name0"}).status_code == 200, "a held pair resumes"
    elsewhere = client.get("/api/next", query_string={"rater": "other"}, environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert elsewhere.status_code == 200, "other addresses are not held back"
    item = client.get("/api/next", query_string={"rater": "name1"}).get_json()
    assert vote_on(client, {}, item, rater="name1").status_code == 200
    assert client.get("/api/next", query_string={"rater": "name2"}).status_code == 200, "answering frees a slot"


def test_leases_expire_and_asking_again_does_not_renew_them(open_study, as_rater):
    study = open_study(attention_check_rate=0.0, votes_per_pair=1, lease_s=600.0)
    client = create_app(study).test_client()
    holder, other = as_rater(study, "holder"), as_rater(study, "other")
    first = client.get("/api/next", headers=holder).get_json()
    with study.store.transaction() as tx:
        held = tx.issue(first["pair_id"])
    for _ in range(5):
        assert client.get("/api/next", headers=holder).get_json()["pair_id"] == first["pair_id"]
    with study.store.transaction() as tx:
        assert tx.issue(first["pair_id"]).issued_at == held.issued_at, "asking again does not renew the lease"

    def rate_until_done() -> None:
        item = client.get("/api/next", headers=other).get_json()
        while not item.get("done"):
            assert vote_on(client, other, item).status_code == 200
            item = client.get("/api/next", headers=other).get_json()

    rate_until_done()
    assert held.task not in {v.task for v in study.votes()}, "a leased pair is not handed to others"
    with sqlite3.connect(study.store.path) as connection:
        connection.execute("UPDATE issues SET issued_at = issued_at - 601 WHERE pair_id = ?", (first["pair_id"],))
    rate_until_done()
    assert held.task in {v.task for v in study.votes() if v.rater == "other"}, "an expired lease is released"
    assert client.get("/api/next", headers=holder).get_json()["done"], "and never handed back"
    assert vote_on(client, holder, first).status_code == 200, "a late answer still counts"


def test_rate_limits_per_rater_and_per_address(open_study, as_rater):
    study = open_study(attention_check_rate=0.0, rater_requests_per_minute=5, address_requests_per_minute=8)
    client = create_app(study).test_client()
    busy, calm = as_rater(study, "busy"), as_rater(study, "calm")
    for _ in range(5):
        assert client.get("/api/next", headers=busy).status_code == 200
    limited = client.get("/api/next", headers=busy)
    assert limited.status_code == 429 and "this rater" in limited.get_json()["error"]
    assert int(limited.headers["Retry-After"]) >= 1
    assert client.get("/api/next", headers=calm).status_code == 200, "other raters go on"
    assert client.get("/api/next", headers=calm).status_code == 200
    flooded = client.get("/api/next", headers=calm)
    assert flooded.status_code == 429 and "this address" in flooded.get_json()["error"]
    other_address = client.get("/api/next", headers=calm, environ_base={"REMOTE_ADDR": "10.2.2.2"})
    assert other_address.status_code == 200
    assert client.get("/api/results", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 429


def test_a_token_bucket_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(60, "rater", clock=lambda: now[0])
    for _ in range(60):
        limiter.take("k")
    with pytest.raises(TooManyRequests) as error:
        limiter.take("k")
    assert error.value.retry_after_s == pytest.approx(1.0)
    now[0] += 2.0
    limiter.take("k")
    limiter.take("k")
    with pytest.raises(TooManyRequests):
        limiter.take("k")


def test_the_owner_token_is_replaced_on_request(pack_dir, capsys):
    store = VoteStore(pack_dir / "votes.sqlite")
    raters_main(["owner", "--pack", str(pack_dir)])
    first = capsys.readouterr().out.rsplit(": ", 1)[1].strip()
    assert store.is_owner_token(first)
    raters_main(["owner", "--pack", str(pack_dir)])
    second = capsys.readouterr().out.rsplit(": ", 1)[1].strip()
    assert store.is_owner_token(second) and not store.is_owner_token(first)
