"""A real server process on 127.0.0.1: 20 concurrent raters (each with a minted link) lose and double-count no
vote, and a killed and restarted server keeps every vote it acknowledged."""

import csv
import io
import json
import os
import select
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from lightning_svd.preference.demo_pack import write_demo_pack
from lightning_svd.preference.store import VoteStore

REPO = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT_S = 60
NO_RATE_LIMIT = {"rater_requests_per_minute": 1000000, "address_requests_per_minute": 1000000}


class RunningServer:
    """`serve_pack.py` in a child process; waits for its URL line, kills it on exit."""

    def __init__(self, pack: Path, db: Path, **settings):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("serve_pack.py")), str(pack), str(db),
             json.dumps(settings)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            self.kill()
            raise AssertionError(f"server did not start: {line!r} {self.process.stderr.read()[-2000:]}")
        self.url = line

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.process.stderr.close()


def call(url: str, payload: dict | None = None, token: str | None = None):
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            body = response.read().decode()
            return response.status, (json.loads(body) if "json" in response.headers["Content-Type"] else body)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read().decode())


@pytest.fixture(scope="module")
def big_pack(tmp_path_factory) -> Path:
    """4 arms x 5 prompts: 60 tasks per rater, enough for 50 votes each."""
    root = tmp_path_factory.mktemp("big_pack")
    write_demo_pack(root, num_prompts=5, num_arms=4, num_frames=4, width=32, height=32)
    return root


@pytest.mark.slow
def test_twenty_concurrent_raters_lose_and_double_count_nothing(big_pack, tmp_path):
    raters, votes_each = 20, 50
    store = VoteStore(tmp_path / "votes.sqlite")
    tokens = store.add_link_raters([f"rater{i:02d}" for i in range(raters)], time.time())
    owner = store.mint_owner_token()
    server = RunningServer(big_pack, store.path, attention_check_rate=0.1, votes_per_pair=raters, **NO_RATE_LIMIT)
    recorded = {rater: [] for rater in tokens}
    failures = []

    def rate(rater: str) -> None:
        for attempt in range(3 * votes_each):
            if len(recorded[rater]) == votes_each:
                return
            status, item = call(f"{server.url}/api/next", token=tokens[rater])
            if status != 200 or item.get("done"):
                failures.append((rater, "next", status, item))
                return
            vote = {"pair_id": item["pair_id"], "question": item["question"],
                    "choice": "left" if attempt % 3 else "right"}
            repeats = 2 if attempt % 5 == 0 else 1
            for _ in range(repeats):
                status, answer = call(f"{server.url}/api/vote", vote, token=tokens[rater])
                if status != 200:
                    failures.append((rater, "vote", status, answer))
                    return
                if answer["status"] == "recorded":
                    recorded[rater].append(item["pair_id"])

    try:
        threads = [threading.Thread(target=rate, args=(rater,), daemon=True) for rater in recorded]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        assert not any(thread.is_alive() for thread in threads), "a rater thread hung"
        assert failures == []
        status, exported = call(f"{server.url}/api/export", token=owner)
        status_results, results = call(f"{server.url}/api/results", token=owner)
    finally:
        server.kill()
    assert status == 200 and status_results == 200
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) == raters * votes_each
    assert Counter(r["rater"] for r in rows) == {rater: votes_each for rater in recorded}
    assert all(len(set(pairs)) == votes_each for pairs in recorded.values()), "each vote acknowledged once"
    keys = Counter((r["rater"], r["prompt_id"], *sorted((r["left_arm"], r["right_arm"])), r["question"])
                   for r in rows)
    assert max(keys.values()) == 1, "no rater answered the same pair and question twice"
    assert results["votes"]["total"] == raters * votes_each
    assert 0 < results["votes"]["attention_checks"] < raters * votes_each // 4


def test_killed_server_keeps_every_vote_and_resumes_open_pairs(pack_dir, tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    tokens = store.add_link_raters(["ann", "ben"], time.time())
    owner = store.mint_owner_token()
    server = RunningServer(pack_dir, store.path, attention_check_rate=0.0, votes_per_pair=3)
    try:
        for _ in range(5):
            for rater in ("ann", "ben"):
                _, item = call(f"{server.url}/api/next", token=tokens[rater])
                status, _ = call(f"{server.url}/api/vote", {"pair_id": item["pair_id"], "question": item["question"],
                                                            "choice": "left"}, token=tokens[rater])
                assert status == 200
        _, open_item = call(f"{server.url}/api/next", token=tokens["ann"])
    finally:
        server.kill()
    assert server.process.returncode == -9

    restarted = RunningServer(pack_dir, store.path, attention_check_rate=0.0, votes_per_pair=3)
    try:
        _, exported = call(f"{restarted.url}/api/export", token=owner)
        _, resumed = call(f"{restarted.url}/api/next", token=tokens["ann"])
        status, answer = call(f"{restarted.url}/api/vote", {"pair_id": resumed["pair_id"],
                                                            "question": resumed["question"], "choice": "right"},
                              token=tokens["ann"])
        _, results = call(f"{restarted.url}/api/results", token=owner)
    finally:
        restarted.kill()
    assert len(list(csv.DictReader(io.StringIO(exported)))) == 10
    assert resumed["pair_id"] == open_item["pair_id"]
    assert resumed["left"] == open_item["left"], "video ids survive a restart"
    assert status == 200 and answer == {"status": "recorded"} and results["votes"]["total"] == 11
