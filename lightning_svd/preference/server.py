"""Serving the app: a threaded WSGI server (one thread per request) bound to the configured address."""

import ipaddress
import logging
import signal
import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from lightning_svd.errors import UserError


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


class StudyServer:
    """Binds at construction (so a busy port fails at once), then serves in this thread or a background one."""

    def __init__(self, app: Flask, host: str, port: int):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        try:
            self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose a free port "
                            "with study.port=PORT (0 picks one)") from error
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self._server.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self._server.port}"

    def serve_until_interrupted(self) -> None:
        """Serve in the calling thread until Ctrl-C (or SIGTERM, as `kill` and service managers send)."""
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)

    def start_in_background(self) -> "StudyServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="study-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "StudyServer":
        return self.start_in_background()

    def __exit__(self, *exc_info) -> None:
        self.stop()
