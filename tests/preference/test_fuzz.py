"""Malformed requests at every endpoint: each gets a 4xx with a JSON error (never a 500), and nothing is stored."""

import json
import random
import sqlite3

import pytest

from lightning_svd.preference.app import create_app

ROUNDS = 150
NO_RATE_LIMIT = {"rater_requests_per_minute": 1000000, "address_requests_per_minute": 1000000}
JUNK_TEXT = ["", " ", "\x00", "\u202e", "é", "💥", "=1+1", "<script>", "../../etc/passwd", "%00", "a" * 5000, "\n"]


def junk_value(rng: random.Random, depth: int = 0):
    """Any JSON value, nested now and then."""
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(JUNK_TEXT)
    if kind == 1:
        return rng.choice([0, -1, 2**70, 1.5, float("1e308")])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice(["quality", "prompt_following", "left", "right", "A" * 24])
    if kind == 4:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 30)))
    if kind == 5:
        return {}
    if kind == 6:
        return [junk_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["pair_id", "question", "choice", "rater", "x"]): junk_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def junk_name(rng: random.Random) -> str:
    """A rater name no study accepts: empty, unprintable, too long, or starting with a formula character."""
    text = str(junk_value(rng))
    return rng.choice(["", "  ", "a\tb", "n" * 65, "ok\x00", rng.choice("=+-@[{<") + text, "\u202eevil"])


def junk_vote(rng: random.Random, pair_id: str) -> bytes:
    """A vote with one part broken: a field of the wrong shape, a missing or extra key, or no JSON at all."""
    vote = {"pair_id": pair_id, "question": "quality", "choice": "left"}
    kind = rng.randrange(6)
    if kind == 0:
        vote[rng.choice(list(vote))] = junk_value(rng)
        if vote["question"] == "quality" and vote["choice"] == "left" and vote["pair_id"] == pair_id:
            vote["choice"] = ["left"]
    elif kind == 1:
        del vote[rng.choice(list(vote))]
    elif kind == 2:
        vote[rng.choice(["rater", "extra", ""])] = junk_value(rng)
    elif kind == 3:
        depth = rng.choice([50, 999, 2000, 2040])
        return ("[" * depth + "]" * depth).encode() if rng.random() < 0.5 else \
            ('{"a":' * depth + "1" + "}" * depth).encode()
    elif kind == 4:
        return rng.choice([b"", b"{", b"\xff\xfe\x00", b"null", b"[]", b'"x"', b"1e999999", b"{'a': 1}",
                           json.dumps(vote).encode()[: rng.randrange(1, 40)]])
    else:
        return json.dumps(junk_value(rng)).encode()
    return json.dumps(vote).encode()


def junk_headers(rng: random.Random) -> dict[str, str]:
    return rng.choice([{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic YTpi"},
                       {"Authorization": "Bearer " + "x" * 300}, {"Authorization": "Bearer \u00e9\u00e9\u00e9"},
                       {"Authorization": "Bearer " + "A" * 32}, {"Authorization": "bearer  "}])


@pytest.mark.parametrize("open_enrollment", [False, True], ids=["links", "open"])
def test_malformed_requests_get_4xx_and_store_nothing(open_study, as_rater, open_enrollment):
    study = open_study(attention_check_rate=0.2, open_enrollment=open_enrollment, **NO_RATE_LIMIT)
    client = create_app(study).test_client()
    fuzzer = as_rater(study, "fuzzer")
    pair_id = client.get("/api/next", headers=fuzzer).get_json()["pair_id"]
    with sqlite3.connect(study.store.path) as connection:
        before = [connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone() for table in ("issues", "raters")]
    rng = random.Random(0)
    answers = []
    for _ in range(ROUNDS):
        body = junk_vote(rng, pair_id)
        for headers in (fuzzer, junk_headers(rng)):
            content_type = rng.choice(["application/json"] * 4 + ["text/plain", "application/x-www-form-urlencoded"])
            answers.append(("vote", body[:60], client.post("/api/vote", data=body, headers=headers,
                                                           content_type=content_type)))
        query = rng.choice([{}, {"rater": junk_name(rng)}, [("rater", "\x00"), ("rater", "ok")]])
        answers.append(("next", query, client.get("/api/next", query_string=query, headers=junk_headers(rng))))
        for path in ("/api/results", "/api/export"):
            token = rng.choice(JUNK_TEXT)
            answers.append((path, token[:20], client.get(path, query_string={"token": token},
                                                         headers=junk_headers(rng))))
        answers.append(("video", None, client.get("/video/" + rng.choice(["0" * 32, "f" * 31, "..", "%2e%2e"]))))
    failures = [(where, what, answer.status_code) for where, what, answer in answers
                if not 400 <= answer.status_code < 500 or "error" not in (answer.get_json(silent=True) or {})]
    assert failures == []
    assert {answer.status_code for *_, answer in answers} >= {400, 401, 403, 404}
    assert study.votes() == []
    with sqlite3.connect(study.store.path) as connection:
        after = [connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone() for table in ("issues", "raters")]
    assert after == before, "no pair handed out and no name enrolled by a malformed request"
