"""Votes and handed-out pairs in SQLite (WAL, synchronous=FULL): a vote acknowledged is a vote kept.

Each write runs in its own `BEGIN IMMEDIATE` transaction on a fresh connection, so concurrent requests (one
thread each) are serialised by SQLite itself and a killed server loses nothing it had answered.
A rater has at most one vote per task (prompt, unordered arm pair, question): the UNIQUE key makes a repeated
vote harmless and a double count impossible.

Raters with a link are rows of `raters` holding only a SHA-256 of their token (tokens are 192 random bits, so a
plain hash cannot be reversed; a copied database hands out no working link); the owner's token is hashed in `meta`.
Names used under open enrolment are rows too, so a free name can never take over a name that has a link.
"""

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lightning_svd.errors import UserError
from lightning_svd.preference.pack import ATTENTION_PREFIX
from lightning_svd.preference.problems import Conflict, Forbidden, InvalidInput, NotFound

DEFAULT_DB_NAME = "votes.sqlite"
LINK, OPEN = "link", "open"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('link', 'open')), token_hash TEXT UNIQUE,
    created_at REAL NOT NULL, revoked_at REAL);
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


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Rater:
    """Who a rater is: `link` (a token the owner minted) or `open` (a free name under open enrolment)."""

    name: str
    kind: str
    created_at: float
    revoked_at: float | None


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

    def live_issue(self, rater: str, since: float) -> Issue | None:
        """The rater's latest unanswered pair handed out at or after `since` (its lease still runs)."""
        row = self.connection.execute(
            "SELECT pair_id, rater, prompt_id, arm_a, arm_b, question, left_arm, right_arm, issued_at FROM issues i "
            "WHERE rater = ? AND issued_at >= ? AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.rater = i.rater AND "
            "v.prompt_id = i.prompt_id AND v.arm_a = i.arm_a AND v.arm_b = i.arm_b AND v.question = i.question) "
            "ORDER BY issued_at DESC LIMIT 1", (rater, since)).fetchone()
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

    def add_link_raters(self, names: list[str], now: float, reissue: bool = False) -> dict[str, str]:
        """A fresh token per name, all or none: {name: token}. A name already in use is refused unless it has a
        link and `reissue` is set (its old link stops working; a revoked rater is let back in)."""
        tokens = {name: new_token() for name in dict.fromkeys(names)}
        with self.transaction() as tx:
            for name, token in tokens.items():
                row = tx.connection.execute("SELECT kind FROM raters WHERE name = ?", (name,)).fetchone()
                voted = tx.connection.execute("SELECT 1 FROM votes WHERE rater = ? LIMIT 1", (name,)).fetchone()
                if row and row[0] == LINK and reissue:
                    tx.connection.execute("UPDATE raters SET token_hash = ?, revoked_at = NULL WHERE name = ?",
                                          (token_hash(token), name))
                elif row and row[0] == LINK:
                    raise UserError(f"rater {name!r} already has a link; pass --reissue to replace it")
                elif row or voted:
                    raise UserError(f"the name {name!r} already has votes or was used under open enrolment; "
                                    "give this rater another name")
                else:
                    tx.connection.execute("INSERT INTO raters VALUES (?, ?, ?, ?, NULL)",
                                          (name, LINK, token_hash(token), now))
        return tokens

    def revoke(self, names: list[str], now: float) -> None:
        """Disable these raters' links; their votes stay stored but leave the rankings."""
        with self.transaction() as tx:
            for name in names:
                if not tx.connection.execute("UPDATE raters SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ? "
                                             "AND kind = ?", (now, name, LINK)).rowcount:
                    raise UserError(f"no rater with a link is called {name!r}; list them with `raters list`")

    def rater_for_token(self, token: str) -> Rater | None:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT name, kind, created_at, revoked_at FROM raters WHERE token_hash = ?",
                                     (token_hash(token),)).fetchone()
        return Rater(*row) if row else None

    def enrol_open(self, name: str, now: float, record: bool = True) -> None:
        """Check a free name (one that has a link may not be used without it) and, with `record`, note it the
        first time it rates."""
        with self.transaction() as tx:
            if record:
                tx.connection.execute("INSERT OR IGNORE INTO raters VALUES (?, ?, NULL, ?, NULL)", (name, OPEN, now))
            row = tx.connection.execute("SELECT kind FROM raters WHERE name = ?", (name,)).fetchone()
        if row and row[0] != OPEN:
            raise Forbidden(f"the name {name!r} belongs to a rater with a personal link; open that link instead")

    def raters(self) -> dict[str, Rater]:
        with closing(self._connect()) as connection:
            rows = connection.execute("SELECT name, kind, created_at, revoked_at FROM raters ORDER BY name")
            return {row[0]: Rater(*row) for row in rows}

    def mint_owner_token(self) -> str:
        """A new owner token (the one before stops working); only its hash is kept."""
        token = new_token()
        with self.transaction() as tx:
            tx.connection.execute("INSERT OR REPLACE INTO meta VALUES ('owner_token_hash', ?)", (token_hash(token),))
        return token

    def has_owner_token(self) -> bool:
        return self._owner_hash() is not None

    def is_owner_token(self, token: str) -> bool:
        expected = self._owner_hash()
        return expected is not None and hmac.compare_digest(token_hash(token), expected)

    def _owner_hash(self) -> str | None:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = 'owner_token_hash'").fetchone()
        return row[0] if row else None

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

    def version(self) -> tuple[int, ...]:
        """Changes whenever a vote is added or a rater enrolled or revoked (what the results depend on)."""
        with closing(self._connect()) as connection:
            return (*connection.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM votes").fetchone(),
                    *connection.execute("SELECT COUNT(*), COALESCE(SUM(revoked_at), 0) FROM raters").fetchone())
