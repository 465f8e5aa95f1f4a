"""Who may rate: the study owner mints one personal link per rater, and an owner token for results and export.

    python -m lightning_svd.preference.raters mint --pack PACK alice bob [--url http://HOST:PORT] [--reissue]
    python -m lightning_svd.preference.raters revoke --pack PACK bob
    python -m lightning_svd.preference.raters list --pack PACK
    python -m lightning_svd.preference.raters owner --pack PACK

Tokens are printed once and stored only as hashes in the study's vote database (`<pack>/votes.sqlite`, or --db as
study.db names it), so a lost link is replaced (`mint --reissue NAME`), never looked up. The first `mint` also
makes the owner token; `owner` replaces it. Works while the study is serving: the server reads links per request.
"""

import argparse
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from lightning_svd.errors import UserError
from lightning_svd.preference.problems import InvalidInput
from lightning_svd.preference.service import validate_rater
from lightning_svd.preference.store import DEFAULT_DB_NAME, VoteStore

DEFAULT_URL = "http://127.0.0.1:8765"


def open_store(pack, db) -> VoteStore:
    """The vote database the study on `pack` uses (study.db when it names one)."""
    pack = Path(pack).expanduser()
    if not (pack / "manifest.json").is_file():
        raise UserError(f"{pack} is not a study pack (no manifest.json); pass the folder given as study.pack")
    return VoteStore(Path(db).expanduser() if db else pack / DEFAULT_DB_NAME)


def rater_link(url: str, token: str) -> str:
    return f"{url.rstrip('/')}/?token={token}"


def mint(store: VoteStore, names: list[str], url: str, reissue: bool = False) -> list[str]:
    """Links for `names` (and the owner token, the first time), as the lines to print."""
    tokens = store.add_link_raters([validate_rater(name) for name in names], time.time(), reissue=reissue)
    lines = [f"{name}\t{rater_link(url, token)}" for name, token in tokens.items()]
    if not store.has_owner_token():
        lines.append(f"owner token (for /api/results and /api/export; shown only now): {store.mint_owner_token()}")
    return lines


def describe(store: VoteStore) -> list[str]:
    votes = Counter(vote.rater for vote in store.votes())
    lines = []
    for name, rater in store.raters().items():
        created = datetime.fromtimestamp(rater.created_at).isoformat(timespec="seconds")
        revoked = "" if rater.revoked_at is None else "\trevoked " + datetime.fromtimestamp(
            rater.revoked_at).isoformat(timespec="seconds")
        lines.append(f"{name}\t{rater.kind}\tsince {created}\t{votes[name]} votes{revoked}")
    return lines or ["no raters yet: mint links with `mint --pack PACK NAME...`"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mint, revoke and list the rater links of a preference study.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("mint", "print a personal link per new rater"), ("revoke", "disable raters' links and "
                       "leave their votes out of the rankings"), ("list", "every rater, link or open name"),
                       ("owner", "print a new owner token (the old one stops working)")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--pack", required=True, help="the study pack (study.pack)")
        command.add_argument("--db", help="the vote database, where study.db names one")
        if name in ("mint", "revoke"):
            command.add_argument("names", nargs="+", help="rater names, 1 to 64 characters each")
        if name == "mint":
            command.add_argument("--url", default=DEFAULT_URL, help="where raters reach the study (host and port)")
            command.add_argument("--reissue", action="store_true", help="replace the links of raters who have one")
    args = parser.parse_args(argv)
    try:
        store = open_store(args.pack, args.db)
        if args.command == "mint":
            lines = mint(store, args.names, args.url, args.reissue)
        elif args.command == "revoke":
            store.revoke(args.names, time.time())
            lines = [f"revoked {', '.join(args.names)}: their links stop working, their votes leave the rankings"]
        elif args.command == "list":
            lines = describe(store)
        else:
            lines = [f"owner token (for /api/results and /api/export; shown only now): {store.mint_owner_token()}"]
    except (UserError, InvalidInput) as error:
        parser.exit(2, f"error: {error}\n")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
