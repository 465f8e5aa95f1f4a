"""Votes and handed-out pairs in SQLite (WAL, synchronous=FULL): a vote acknowledged is a vote kept.

Each write runs in its own `BEGIN IMMEDIATE` transaction on a fresh connection, so concurrent requests (one
thread each) are serialised by SQLite itself and a killed server loses nothing it had answered.
A rater has at most one vote per task (prompt, unordered arm pair, question): the UNIQUE key makes a repeated
vote harmless and a double count impossible.
"""

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lightning_svd.errors import UserError
from lightning_svd.preference.pack import ATTENTION_PREFIX
from lightning_svd.preference.problems import Conflict, InvalidInput, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS issues (
    pair_id TEXT PRIMARY KEY, rater TEXT NOT NULL, prompt_id TEXT NOT NULL, arm_a TEXT NOT NULL,
    arm_b TEXT NOT NULL, question TEXT NOT NULL, left_arm TEXT NOT NULL, right_arm TEXT NOT NULL,
    issued_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS issues_by_rater ON issues (rater, issued_at);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL, prompt_id TEXT NOT NULL, arm_a TEXT NOT NULL,
    arm_b TEXT NOT NULL, question TEXT NOT NULL, left_arm TEXT NOT NULL, right_arm TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')), winner TEXT NOT NULL, loser TEXT NOT NULL,
    pair_id TEXT, source TEXT NOT NULL, seconds_on_item REAL, created_at REAL NOT NULL,
    UNIQUE (rater, prompt_id, arm_a, arm_b, question));
"""


@dataclass(frozen=True, order=True)
class Task:
    """One judgement to collect: a prompt, an unordered pair of arms (arm_a < arm_b) and a question."""

    prompt_id: str
    arm_a: str
    arm_b: str
    question: str

    @classmethod
    def of(cls, prompt_id: str, first_arm: str, second_arm: str, question: str) -> "Task":
        arm_a, arm_b = sorted((first_arm, second_arm))
        return cls(prompt_id, arm_a, arm_b, question)

    @property
    def is_attention_check(self) -> bool:
        return self.arm_a.startswith(ATTENTION_PREFIX) or self.arm_b.startswith(ATTENTION_PREFIX)


@dataclass(frozen=True)
class Issue:
    """A task handed to one rater, with the sides it was shown on."""

    pair_id: str
    rater: str
    task: Task
    left_arm: str
    right_arm: str
    issued_at: float


@dataclass(frozen=True)
class Vote:
    rater: str
    task: Task
    left_arm: str
    right_arm: str
    choice: str
    winner: str
    loser: str
    pair_id: str | None
    source: str
    seconds_on_item: float | None
    created_at: float


def _winner_loser(left_arm: str, right_arm: str, choice: str) -> tuple[str, str]:
    if choice == "left":
        return left_arm, right_arm
    if choice == "right":
        return right_arm, left_arm
    raise InvalidInput(f"choice must be 'left' or 'right', got {choice!r}")


class Transaction:
    """The reads and writes one request needs, inside a single immediate transaction."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def latest_open_issue(self, rater: str) -> Issue | None:
        row = self.connection.execute(
            "SELECT pair_id, rater, prompt_id, arm_a, arm_b, question, left_arm, right_arm, issued_at FROM issues i "
            "WHERE rater = ? AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.rater = i.rater AND "
            "v.prompt_id = i.prompt_id AND v.arm_a = i.arm_a AND v.arm_b = i.arm_b AND v.question = i.question) "
            "ORDER BY issued_at DESC LIMIT 1", (rater,)).fetchone()
        return _issue(row) if row else None

    def issue(self, pair_id: str) -> Issue | None:
        row = self.connection.execute(
            "SELECT pair_id, rater, prompt_id, arm_a, arm_b, question, left_arm, right_arm, issued_at FROM issues "
            "WHERE pair_id = ?", (pair_id,)).fetchone()
        return _issue(row) if row else None

    def tasks_of(self, rater: str) -> set[Task]:
        """Every task this rater was ever shown or voted on: never to be asked again."""
        rows = self.connection.execute(
            "SELECT prompt_id, arm_a, arm_b, question FROM issues WHERE rater = ? UNION "
            "SELECT prompt_id, arm_a, arm_b, question FROM votes WHERE rater = ?", (rater, rater)).fetchall()
        return {Task(*row) for row in rows}

    def demand(self, other_than: str, open_since: float) -> dict[Task, int]:
        """Votes per task, plus pairs other raters hold open since `open_since` (they will likely vote)."""
        counts: dict[Task, int] = {}
        for row in self.connection.execute(
                "SELECT prompt_id, arm_a, arm_b, question, COUNT(*) FROM votes GROUP BY 1, 2, 3, 4"):
            counts[Task(*row[:4])] = row[4]
        for row in self.connection.execute(
                "SELECT prompt_id, arm_a, arm_b, question, COUNT(*) FROM issues i WHERE rater != ? AND "
                "issued_at >= ? AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.rater = i.rater AND "
                "v.prompt_id = i.prompt_id AND v.arm_a = i.arm_a AND v.arm_b = i.arm_b AND "
                "v.question = i.question) GROUP BY 1, 2, 3, 4", (other_than, open_since)):
            task = Task(*row[:4])
            counts[task] = counts.get(task, 0) + row[4]
        return counts

    def count_votes(self, rater: str) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM votes WHERE rater = ?", (rater,)).fetchone()[0]

    def add_issue(self, issue: Issue) -> None:
        task = issue.task
        self.connection.execute(
            "INSERT INTO issues VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (issue.pair_id, issue.rater, task.prompt_id, task.arm_a, task.arm_b, task.question, issue.left_arm,
             issue.right_arm, issue.issued_at))

    def add_vote(self, vote: Vote) -> str:
        """Insert a vote: 'recorded', or 'duplicate' when the same answer is already there; Conflict otherwise."""
        task = vote.task
        cursor = self.connection.execute(
            "INSERT OR IGNORE INTO votes (rater, prompt_id, arm_a, arm_b, question, left_arm, right_arm, choice, "
            "winner, loser, pair_id, source, seconds_on_item, created_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (vote.rater, task.prompt_id, task.arm_a, task.arm_b, task.question, vote.left_arm, vote.right_arm,
             vote.choice, vote.winner, vote.loser, vote.pair_id, vote.source, vote.seconds_on_item,
             vote.created_at))
        if cursor.rowcount == 1:
            return "recorded"
        earlier = self.connection.execute(
            "SELECT winner FROM votes WHERE rater = ? AND prompt_id = ? AND arm_a = ? AND arm_b = ? AND question = ?",
            (vote.rater, task.prompt_id, task.arm_a, task.arm_b, task.question)).fetchone()[0]
        if earlier != vote.winner:
            raise Conflict(f"rater {vote.rater!r} already answered this pair and question the other way")
        return "duplicate"


def _issue(row) -> Issue:
    pair_id, rater, prompt_id, arm_a, arm_b, question, left_arm, right_arm, issued_at = row
    return Issue(pair_id, rater, Task(prompt_id, arm_a, arm_b, question), left_arm, right_arm, issued_at)


class VoteStore:
    """The SQLite file behind a study. Safe to share between threads and processes."""

    def __init__(self, path: Path):
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise UserError(f"cannot open the vote database {self.path} ({error}); set study.db to a writable "
                            "file path") from error

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=60000")
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def secret(self) -> str:
        """A random key made once per database: it turns video paths into ids a rater cannot reverse."""
        with self.transaction() as tx:
            row = tx.connection.execute("SELECT value FROM meta WHERE key = 'video_id_key'").fetchone()
            if row:
                return row[0]
            key = secrets.token_hex(32)
            tx.connection.execute("INSERT INTO meta VALUES ('video_id_key', ?)", (key,))
            return key

    def record(self, rater: str, pair_id: str, question: str, choice: str, now: float) -> str:
        """Record a web vote on a pair this rater was shown: 'recorded' or 'duplicate'."""
        with self.transaction() as tx:
            issue = tx.issue(pair_id)
            if issue is None or issue.rater != rater:
                raise NotFound(f"pair_id {pair_id!r} was not handed to rater {rater!r}; ask /api/next for a pair")
            if issue.task.question != question:
                raise InvalidInput(f"pair_id {pair_id!r} asks {issue.task.question!r}, not {question!r}")
            winner, loser = _winner_loser(issue.left_arm, issue.right_arm, choice)
            return tx.add_vote(Vote(rater, issue.task, issue.left_arm, issue.right_arm, choice, winner, loser,
                                    pair_id, "web", now - issue.issued_at, now))

    def import_votes(self, votes: list[Vote]) -> dict[str, int]:
        """Add votes from elsewhere in one transaction: counts of recorded, duplicate and conflicting rows."""
        counts = {"recorded": 0, "duplicate": 0, "conflict": 0}
        with self.transaction() as tx:
            for vote in votes:
                try:
                    counts[tx.add_vote(vote)] += 1
                except Conflict:
                    counts["conflict"] += 1
        return counts

    def votes(self) -> list[Vote]:
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT rater, prompt_id, arm_a, arm_b, question, left_arm, right_arm, choice, winner, loser, "
                "pair_id, source, seconds_on_item, created_at FROM votes ORDER BY id").fetchall()
        return [Vote(row[0], Task(*row[1:5]), *row[5:]) for row in rows]

    def version(self) -> tuple[int, int]:
        """(number of votes, last vote id): changes whenever a vote is added."""
        with closing(self._connect()) as connection:
            return connection.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM votes").fetchone()
