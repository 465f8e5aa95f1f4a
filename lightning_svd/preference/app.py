"""The Flask app: one static page, the videos by opaque id, and the JSON API. Handlers only validate and map
errors to status codes; the study does the work.

    GET  /                    the rating page; a rater's personal link is /?token=TOKEN
    GET  /video/<id>          a video of the pack (byte ranges supported), by opaque id only
    GET  /api/next            {"rater", "pair_id", "question", "question_text", "prompt", "left": {"url"},
                              "right": {"url"}, "progress"} or {"rater", "done": true, "progress"}
    POST /api/vote            {"pair_id", "question", "choice": "left" | "right"}
    GET  /api/results         Elo and Bradley-Terry per question and pooled (owner only)
    GET  /api/export          every vote as CSV (owner only)

A rater sends their link's token as `Authorization: Bearer TOKEN`. Only under open enrolment may a request come
without one and name its rater instead (`?rater=NAME`, or "rater" in the vote). Results and export unblind the
arms, so they need the owner's token (`Authorization: Bearer TOKEN` or `?token=`). Every /api/ request counts
against its address's rate limit, and a rater's requests against the rater's own.
"""

import json
import math
import re
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from lightning_svd.preference.assignment import QUESTIONS
from lightning_svd.preference.limits import RateLimiter
from lightning_svd.preference.problems import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from lightning_svd.preference.service import PreferenceStudy

STATIC_FOLDER = Path(__file__).with_name("static")
VIDEO_ID = re.compile(r"[0-9a-f]{32}")
PAIR_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
VOTE_KEYS = {"pair_id", "question", "choice"}
MAX_REQUEST_BYTES = 4096
MAX_TOKEN_LENGTH = 256
OWNER_HINT = "mint it with `python -m lightning_svd.preference.raters owner --pack PACK`"


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized("the Authorization header must be 'Bearer TOKEN'")
    return token


def _json_object() -> dict:
    """The request body as a JSON object; anything else (including a deeply nested body) is bad input."""
    if not request.is_json:
        raise InvalidInput("the body must be JSON (Content-Type: application/json)")
    try:
        payload = json.loads(request.get_data())
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInput("the body must be a JSON object with pair_id, question and choice")
    return payload


def _vote_fields(payload: dict, keys: set[str]) -> tuple[str, str, str]:
    if set(payload) != keys:
        raise InvalidInput(f"the vote needs exactly the keys {sorted(keys)}, got {sorted(payload)}")
    pair_id, question, choice = payload["pair_id"], payload["question"], payload["choice"]
    if not isinstance(pair_id, str) or not PAIR_ID.fullmatch(pair_id):
        raise InvalidInput("pair_id must be the id /api/next returned")
    if not isinstance(question, str) or question not in QUESTIONS:
        raise InvalidInput(f"question must be one of {list(QUESTIONS)}")
    if not isinstance(choice, str) or choice not in ("left", "right"):
        raise InvalidInput("choice must be 'left' or 'right'")
    return pair_id, question, choice


def create_app(study: PreferenceStudy) -> Flask:
    app = Flask(__name__, static_folder=str(STATIC_FOLDER), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    address_limit = RateLimiter(study.settings.address_requests_per_minute, "address")
    rater_limit = RateLimiter(study.settings.rater_requests_per_minute, "rater")

    @app.errorhandler(InvalidInput)
    def bad_request(error):
        return jsonify(error=str(error)), 400

    @app.errorhandler(Unauthorized)
    def unauthorized(error):
        return jsonify(error=str(error)), 401, {"WWW-Authenticate": "Bearer"}

    @app.errorhandler(Forbidden)
    def forbidden(error):
        return jsonify(error=str(error)), 403

    @app.errorhandler(NotFound)
    def not_found(error):
        return jsonify(error=str(error)), 404

    @app.errorhandler(Conflict)
    def conflict(error):
        return jsonify(error=str(error)), 409

    @app.errorhandler(TooManyRequests)
    def too_many(error):
        return jsonify(error=str(error)), 429, {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}

    @app.errorhandler(404)
    def unknown_route(_error):
        return jsonify(error="not found"), 404

    @app.errorhandler(405)
    def wrong_method(_error):
        return jsonify(error=f"{request.method} is not allowed on {request.path}"), 405

    @app.errorhandler(413)
    def too_large(_error):
        return jsonify(error=f"request body larger than {MAX_REQUEST_BYTES} bytes"), 413

    @app.errorhandler(416)
    def bad_range(_error):
        return jsonify(error="the requested byte range is outside the video"), 416

    @app.errorhandler(500)
    def internal_error(_error):
        return jsonify(error="internal error; the server log has the details"), 500

    @app.before_request
    def limit_address() -> None:
        if request.path.startswith("/api/"):
            address_limit.take(request.remote_addr or "unknown")

    @app.after_request
    def harden(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self'; img-src 'self'")
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def identify(named, enrol: bool) -> tuple[str, str | None]:
        """The rater a request speaks for, and (open enrolment only) the address whose held pairs are capped."""
        token = _bearer_token()
        if token is not None:
            if named is not None:
                raise InvalidInput("a rater link names its rater; leave out rater")
            rater, open_address = study.rater_for_token(token), None
        else:
            rater, open_address = study.open_rater(named, enrol), request.remote_addr or "unknown"
        rater_limit.take(rater)
        return rater, open_address

    def require_owner() -> None:
        token = _bearer_token() or request.args.get("token")
        if not token or not study.is_owner(token):
            raise Forbidden(f"results and votes need the owner token (Authorization: Bearer TOKEN); {OWNER_HINT}")

    @app.get("/")
    def page():
        return send_file(STATIC_FOLDER / "index.html", mimetype="text/html", max_age=0)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status=204)

    @app.get("/video/<video_id>")
    def video(video_id: str):
        if not VIDEO_ID.fullmatch(video_id):
            raise NotFound("no such video")
        handle, stat = study.open_video(video_id)
        response = send_file(handle, mimetype="video/mp4", conditional=False, max_age=3600,
                             etag=f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}",
                             last_modified=stat.st_mtime)
        response.content_length = stat.st_size
        try:
            return response.make_conditional(request, accept_ranges=True, complete_length=stat.st_size)
        except RequestedRangeNotSatisfiable:
            handle.close()
            raise

    @app.get("/api/next")
    def next_pair():
        rater, open_address = identify(request.args.get("rater"), enrol=True)
        return jsonify(study.next_item(rater, open_address))

    @app.post("/api/vote")
    def vote():
        payload = _json_object()
        rater, open_address = identify(payload.get("rater"), enrol=False)
        pair_id, question, choice = _vote_fields(payload, VOTE_KEYS | ({"rater"} if open_address else set()))
        return jsonify(study.vote(rater, pair_id, question, choice))

    @app.get("/api/results")
    def results():
        require_owner()
        return jsonify(study.results())

    @app.get("/api/export")
    def export():
        require_owner()
        return Response(study.export_csv(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=votes.csv"})

    return app
