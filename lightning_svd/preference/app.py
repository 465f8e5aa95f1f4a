"""The Flask app: one static page, the videos by opaque id, and the JSON API. Handlers only validate and map
errors to status codes; the study does the work.

    GET  /                    the rating page
    GET  /video/<id>          a video of the pack (byte ranges supported), by opaque id only
    GET  /api/next?rater=R    {"pair_id", "question", "question_text", "prompt", "left": {"url"},
                              "right": {"url"}, "progress"} or {"done": true, "progress"}
    POST /api/vote            {"rater", "pair_id", "question", "choice": "left" | "right"}
    GET  /api/results         Elo and Bradley-Terry per question and pooled
    GET  /api/export          every vote as CSV

With `results_token` set, the last two need `Authorization: Bearer <token>` (or `?token=`), so raters on a
shared network cannot look up which arm they were shown.
"""

import hmac
import re
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_file

from lightning_svd.preference.assignment import QUESTIONS
from lightning_svd.preference.problems import Conflict, Forbidden, InvalidInput, NotFound
from lightning_svd.preference.service import PreferenceStudy, validate_rater

STATIC_FOLDER = Path(__file__).with_name("static")
VIDEO_ID = re.compile(r"[0-9a-f]{32}")
PAIR_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
VOTE_KEYS = {"rater", "pair_id", "question", "choice"}
MAX_REQUEST_BYTES = 4096


def _vote_payload() -> dict:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise InvalidInput("the body must be a JSON object with rater, pair_id, question and choice")
    if set(payload) != VOTE_KEYS:
        raise InvalidInput(f"the vote needs exactly the keys {sorted(VOTE_KEYS)}, got {sorted(payload)}")
    pair_id, question, choice = payload["pair_id"], payload["question"], payload["choice"]
    if not isinstance(pair_id, str) or not PAIR_ID.fullmatch(pair_id):
        raise InvalidInput("pair_id must be the id /api/next returned")
    if question not in QUESTIONS:
        raise InvalidInput(f"question must be one of {list(QUESTIONS)}")
    if choice not in ("left", "right"):
        raise InvalidInput("choice must be 'left' or 'right'")
    return {"rater": validate_rater(payload["rater"]), "pair_id": pair_id, "question": question, "choice": choice}


def create_app(study: PreferenceStudy) -> Flask:
    app = Flask(__name__, static_folder=str(STATIC_FOLDER), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @app.errorhandler(InvalidInput)
    def bad_request(error):
        return jsonify(error=str(error)), 400

    @app.errorhandler(NotFound)
    def not_found(error):
        return jsonify(error=str(error)), 404

    @app.errorhandler(Forbidden)
    def forbidden(error):
        return jsonify(error=str(error)), 403

    @app.errorhandler(Conflict)
    def conflict(error):
        return jsonify(error=str(error)), 409

    @app.errorhandler(404)
    def unknown_route(_error):
        return jsonify(error="not found"), 404

    @app.errorhandler(405)
    def wrong_method(_error):
        return jsonify(error=f"{request.method} is not allowed on {request.path}"), 405

    @app.errorhandler(413)
    def too_large(_error):
        return jsonify(error=f"request body larger than {MAX_REQUEST_BYTES} bytes"), 413

    @app.errorhandler(500)
    def internal_error(_error):
        return jsonify(error="internal error; the server log has the details"), 500

    @app.after_request
    def harden(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self'; img-src 'self'")
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def page():
        return send_file(STATIC_FOLDER / "index.html", mimetype="text/html", max_age=0)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status=204)

    @app.get("/video/<video_id>")
    def video(video_id: str):
        path = study.video_path(video_id) if VIDEO_ID.fullmatch(video_id) else None
        if path is None:
            raise NotFound("no such video")
        return send_file(path, mimetype="video/mp4", conditional=True, max_age=3600)

    @app.get("/api/next")
    def next_pair():
        return jsonify(study.next_item(validate_rater(request.args.get("rater"))))

    @app.post("/api/vote")
    def vote():
        return jsonify(study.vote(**_vote_payload()))

    def require_results_token() -> None:
        expected = study.settings.results_token
        if expected is None:
            return
        given = request.headers.get("Authorization", "").removeprefix("Bearer ") or request.args.get("token", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Forbidden("results and votes need the study's results_token (Authorization: Bearer TOKEN)")

    @app.get("/api/results")
    def results():
        require_results_token()
        return jsonify(study.results())

    @app.get("/api/export")
    def export():
        require_results_token()
        return Response(study.export_csv(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=votes.csv"})

    return app
