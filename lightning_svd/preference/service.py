"""The study behind the web page: hands out pairs, records votes, imports and exports them, ranks the arms.

Videos are addressed by opaque ids (a keyed hash of their path), so neither a URL nor a file name tells a
rater which arm made a video.

Raters are accountable: each comes with a token from a link the owner minted (`python -m
lightning_svd.preference.raters`), or, only where the owner switched open enrolment on, with a free name. A pair
handed out is leased for `lease_s`: asking again returns the same pair without extending the lease, and an expired
pair is released to others.
"""

import csv
import hashlib
import hmac
import io
import logging
import random
import secrets
import threading
import time
from pathlib import Path

from lightning_svd.errors import UserError
from lightning_svd.preference.assignment import QUESTIONS, Assigner, attention_tasks, study_tasks
from lightning_svd.preference.attention import ensure_attention_videos
from lightning_svd.preference.limits import OpenLeases
from lightning_svd.preference.pack import ATTENTION_PREFIX, PackVideo, StudyPack, open_inside
from lightning_svd.preference.problems import Forbidden, InvalidInput, NotFound, Unauthorized
from lightning_svd.preference.results import compute_results
from lightning_svd.preference.settings import StudySettings
from lightning_svd.preference.store import Issue, Task, Vote, VoteStore

MAX_RATER_LENGTH = 64
EXPORT_COLUMNS = ("rater", "prompt_id", "question", "left_arm", "right_arm", "choice", "winner", "loser",
                  "is_attention_check", "source", "seconds_on_item", "created_at")
IMPORT_COLUMNS = ("rater", "prompt_id", "question", "left_arm", "right_arm", "choice")

log = logging.getLogger(__name__)


def validate_rater(value) -> str:
    """A rater name: 1 to 64 printable characters starting with a letter or digit (so a spreadsheet never reads
    an exported name as a formula, and Markdown never a list), surrounding spaces dropped."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("rater is required: a name of 1 to 64 printable characters")
    rater = value.strip()
    if len(rater) > MAX_RATER_LENGTH or not rater.isprintable():
        raise InvalidInput(f"rater must be 1 to {MAX_RATER_LENGTH} printable characters")
    if not rater[0].isalnum():
        raise InvalidInput("rater must start with a letter or a digit")
    return rater


class PreferenceStudy:
    """One study: a pack, its vote store and the settings; what the HTTP handlers and the task call."""

    def __init__(self, pack: StudyPack, store: VoteStore, settings: StudySettings,
                 videos: dict[tuple[str, str], PackVideo]):
        self.pack, self.store, self.settings = pack, store, settings
        self.open_leases = OpenLeases(settings.max_pending_per_address)
        key = store.secret().encode()
        self.video_ids = {
            arm_prompt: hmac.new(key, video.relative_path.encode(), hashlib.sha256).hexdigest()[:32]
            for arm_prompt, video in videos.items()
        }
        self.video_files = {self.video_ids[arm_prompt]: video.path for arm_prompt, video in videos.items()}
        checks = attention_tasks(pack) if settings.attention_check_rate > 0 else []
        self.assigner = Assigner(study_tasks(pack), checks, settings.votes_per_pair,
                                 settings.attention_check_rate, random.Random(secrets.randbits(64)))
        self._results_lock = threading.Lock()
        self._results_cache: tuple[tuple[int, int], dict] | None = None

    @classmethod
    def open(cls, pack: StudyPack, db_path: Path, settings: StudySettings) -> "PreferenceStudy":
        store = VoteStore(db_path)
        videos = dict(pack.videos)
        if settings.attention_check_rate > 0:
            videos.update(ensure_attention_videos(pack, settings.seed, store.secret().encode()))
        return cls(pack, store, settings, videos)

    def rater_for_token(self, token: str) -> str:
        """The name behind a rater link's token."""
        rater = self.store.rater_for_token(token)
        if rater is None:
            raise Unauthorized("this rater token is unknown; open the personal link the study owner sent you")
        if rater.revoked_at is not None:
            raise Forbidden("this rater link was revoked by the study owner")
        return rater.name

    def open_rater(self, name, enrol: bool) -> str:
        """A free name, taken only where the owner switched open enrolment on and never one that has a link;
        `enrol` records it (when it asks for a pair: a vote needs one first, so a vote enrols nobody)."""
        if not self.settings.open_enrollment:
            raise Unauthorized("this study rates by personal link: open the link the study owner sent you")
        rater = validate_rater(name)
        self.store.enrol_open(rater, time.time(), record=enrol)
        return rater

    def is_owner(self, token: str) -> bool:
        """The minted owner token, or the config's results_token where one is set."""
        fixed = self.settings.results_token
        return self.store.is_owner_token(token) or (
            fixed is not None and hmac.compare_digest(token.encode(), fixed.encode()))

    def next_item(self, rater: str, open_address: str | None = None) -> dict:
        """The rater's pair whose lease still runs, else a new one; {"done": true} when nothing is left.

        `open_address` (open enrolment only) is the client address whose held pairs are capped: a name there is
        free, an address is not.
        """
        now = time.time()
        with self.store.transaction() as tx:
            seen = tx.tasks_of(rater)
            demand = tx.demand(other_than=rater, open_since=now - self.settings.lease_s)
            answered = tx.count_votes(rater)
            issue = tx.live_issue(rater, since=now - self.settings.lease_s)
            if issue is not None and not self._servable(issue):
                issue = None
            if issue is None:
                task = self.assigner.choose(demand, seen)
                if task is None:
                    return {"done": True, "rater": rater, "progress": {"answered": answered, "more": 0}}
                left, right = self.assigner.sides(task)
                issue = Issue(secrets.token_urlsafe(18), rater, task, left, right, now)
                if open_address is not None:
                    self.open_leases.hold(open_address, issue.pair_id, until=now + self.settings.lease_s)
                tx.add_issue(issue)
                seen.add(task)
            more = self.assigner.remaining(demand, seen)
        return {
            "rater": rater,
            "pair_id": issue.pair_id,
            "question": issue.task.question,
            "question_text": QUESTIONS[issue.task.question],
            "prompt": self.pack.prompt_text(issue.task.prompt_id),
            "left": {"url": self._video_url(issue.left_arm, issue.task.prompt_id)},
            "right": {"url": self._video_url(issue.right_arm, issue.task.prompt_id)},
            "progress": {"answered": answered, "more": more},
        }

    def _servable(self, issue: Issue) -> bool:
        """False for a pair left open under another pack version or with attention checks since turned off."""
        prompt_id = issue.task.prompt_id
        return (issue.left_arm, prompt_id) in self.video_ids and (issue.right_arm, prompt_id) in self.video_ids

    def _video_url(self, arm: str, prompt_id: str) -> str:
        return f"/video/{self.video_ids[(arm, prompt_id)]}"

    def vote(self, rater: str, pair_id: str, question: str, choice: str) -> dict:
        status = self.store.record(rater, pair_id, question, choice, time.time())
        self.open_leases.release(pair_id)
        return {"status": status}

    def open_video(self, video_id: str):
        """(binary file, stat) of a video, checked to lie inside the pack now; NotFound otherwise."""
        path = self.video_files.get(video_id)
        if path is None:
            raise NotFound("no such video")
        try:
            return open_inside(self.pack.root, path)
        except NotFound:
            log.warning("refused to serve %s: it is no longer a file inside the pack %s", path, self.pack.root)
            raise

    def votes(self) -> list[Vote]:
        return self.store.votes()

    def export_csv(self) -> str:
        """Every vote, one row each, in the columns import_csv reads back."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for vote in self.store.votes():
            writer.writerow([vote.rater, vote.task.prompt_id, vote.task.question, vote.left_arm, vote.right_arm,
                             vote.choice, vote.winner, vote.loser, int(vote.task.is_attention_check), vote.source,
                             "" if vote.seconds_on_item is None else f"{vote.seconds_on_item:.3f}",
                             f"{vote.created_at:.3f}"])
        return buffer.getvalue()

    def import_csv(self, path: Path) -> dict[str, int]:
        """Add votes from a CSV (e.g. an external rating platform); needs the columns in IMPORT_COLUMNS.

        Other columns (such as the rest of an export) are ignored. Importing the same file twice is harmless.
        """
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read study.import_csv file {path}: {error}") from error
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in IMPORT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path} lacks the columns {missing}; it needs {list(IMPORT_COLUMNS)}")
        votes = []
        for line, row in enumerate(reader, start=2):
            try:
                votes.append(self._imported_vote(row, f"import:{path.name}"))
            except InvalidInput as error:
                raise UserError(f"{path} line {line}: {error}") from error
        return self.store.import_votes(votes)

    def _imported_vote(self, row: dict, source: str) -> Vote:
        rater = validate_rater(row["rater"])
        prompt_id, question, choice = row["prompt_id"], row["question"], row["choice"]
        left_arm, right_arm = row["left_arm"], row["right_arm"]
        if prompt_id not in {p.id for p in self.pack.prompts}:
            raise InvalidInput(f"prompt_id {prompt_id!r} is not in the pack")
        if question not in QUESTIONS:
            raise InvalidInput(f"question {question!r} must be one of {list(QUESTIONS)}")
        if choice not in ("left", "right"):
            raise InvalidInput(f"choice {choice!r} must be 'left' or 'right' (ties are not part of the protocol)")
        plain = {arm.removeprefix(ATTENTION_PREFIX) for arm in (left_arm, right_arm)}
        degraded = [arm for arm in (left_arm, right_arm) if arm.startswith(ATTENTION_PREFIX)]
        if not plain <= set(self.pack.arms) or left_arm == right_arm or (degraded and len(plain) != 1):
            raise InvalidInput(f"arms {left_arm!r} and {right_arm!r} must be two different arms of the pack "
                               f"{list(self.pack.arms)} (or an arm and its {ATTENTION_PREFIX}copy)")
        created_at = _optional_float(row.get("created_at"), "created_at") or time.time()
        winner, loser = (left_arm, right_arm) if choice == "left" else (right_arm, left_arm)
        return Vote(rater, Task.of(prompt_id, left_arm, right_arm, question), left_arm, right_arm, choice, winner,
                    loser, None, source, _optional_float(row.get("seconds_on_item"), "seconds_on_item"), created_at)

    def results(self) -> dict:
        """Rankings from the votes so far; recomputed only when a vote was added."""
        with self._results_lock:
            version = self.store.version()
            if self._results_cache is None or self._results_cache[0] != version:
                self._results_cache = (version, compute_results(self.pack, self.store.votes(), self.settings,
                                                                self.store.raters()))
            return self._results_cache[1]


def _optional_float(value, column: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError as error:
        raise InvalidInput(f"{column} {value!r} must be a number") from error
