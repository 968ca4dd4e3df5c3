"""The optional HTTP endpoint: ``/metrics`` for Prometheus and ``/healthz`` for probes.

Off unless ``STORYWATCH_METRICS_PORT`` is set. It runs a small threaded HTTP
server in a daemon thread rather than on the bot's event loop, so a scrape can
never delay a poll or a send, and it keeps answering while the loop is busy.
``/healthz`` gives exactly the verdict ``storywatch health`` gives (both call
``bot.health.check_store``): 200 when healthy, 503 otherwise, with the
reasons as JSON.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bot.health import HealthVerdict, check_store
from bot.observability.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)

# In a container the port is published from outside, so listen on every
# interface there; tests and bare-metal runs pass "127.0.0.1".
DEFAULT_HOST = "0.0.0.0"  # noqa: S104 (deliberate, see above)


def database_health(
    db_path: Path,
    poll_interval: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    *,
    database_url: str | None = None,
) -> Callable[[], HealthVerdict]:
    """The verdict of ``storywatch health`` for the bot whose database is ``db_path``
    (or PostgreSQL at ``database_url``)."""
    return lambda: check_store(db_path, database_url, poll_interval, clock())


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so an idle scraper cannot hold a thread.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                if self.server.on_scrape is not None:
                    self.server.on_scrape()
                self._reply(200, CONTENT_TYPE_LATEST, self.server.metrics.exposition())
            elif path == "/healthz":
                verdict = self.server.health()
                body = {"ok": verdict.ok, "status": verdict.describe(), "reasons": verdict.reasons}
                self._reply(
                    200 if verdict.ok else 503,
                    "application/json",
                    json.dumps(body).encode() + b"\n",
                )
            else:
                missing = b"not found: try /metrics or /healthz\n"
                self._reply(404, "text/plain; charset=utf-8", missing)
        except Exception:
            log.exception("observability endpoint failed on %s", path)
            self._reply(500, "text/plain; charset=utf-8", b"internal error\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Every scrape would otherwise print a line to stderr, outside structlog.
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        health: Callable[[], HealthVerdict],
        on_scrape: Callable[[], None] | None,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.on_scrape = on_scrape
        super().__init__(address, _Handler)


class ObservabilityServer:
    """A running endpoint; ``stop()`` closes it. Build with :func:`start_server`."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="storywatch-metrics",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port actually bound (useful when started on port 0)."""
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the socket; returns within about 0.2 s. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def start_server(
    port: int,
    metrics: Metrics,
    health: Callable[[], HealthVerdict],
    *,
    host: str = DEFAULT_HOST,
    on_scrape: Callable[[], None] | None = None,
) -> ObservabilityServer:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` in a background thread.

    ``on_scrape`` runs before each ``/metrics`` answer, e.g. to refresh the
    pending-alerts gauge from the outbox. Raises ``OSError`` if the port is taken.
    """
    server = _Server((host, port), metrics, health, on_scrape)
    running = ObservabilityServer(server)
    log.info("metrics and health endpoint listening on %s:%d", host, running.port)
    return running
