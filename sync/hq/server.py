"""``tillpoints hq serve``: the HQ API on gunicorn, a production WSGI server.

Why gunicorn: pre-forked worker *processes* (each with a few threads, the
``gthread`` worker) match HQ's statelessness, since nothing is shared between
requests except the database; it terminates TLS itself (``certfile``/``keyfile``),
restarts a crashed worker, and caps request lines and headers. Request *bodies*
are capped by the application (``sync.wire.MAX_BODY_BYTES``, answered 413).
The app is loaded in each worker after the fork (no ``preload_app``), so each
process opens its own database connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from sync.errors import invalid
from sync.hq.logs import logconfig


@dataclass(frozen=True)
class ServeOptions:
    db_url: str
    key: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    workers: int = 2
    threads: int = 8


class _HQApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        opts = self.options
        settings: dict[str, Any] = {
            "bind": f"{opts.host}:{opts.port}",
            "workers": opts.workers,
            "worker_class": "gthread",
            "threads": opts.threads,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 5,
            "limit_request_line": 4094,
            "limit_request_fields": 50,
            "limit_request_field_size": 8190,
            "accesslog": None,
            "errorlog": "-",
            "logconfig_dict": logconfig(),
            "proc_name": "tillpoints-hq",
            # No gunicorn control socket: it would live at one fixed path per user,
            # and HQ is managed by signals (systemd), not by gunicornc.
            "control_socket_disable": True,
        }
        if opts.tls_cert is not None:
            settings["certfile"] = str(opts.tls_cert)
            settings["keyfile"] = str(opts.tls_key)
        for name, value in settings.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        from sync.hq.http import create_app

        return create_app(self.options.db_url, key=self.options.key)


def serve(options: ServeOptions) -> None:
    """Run until SIGTERM/SIGINT. Checks the database and key before forking."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise invalid("invalid_tls", "tls: give both --tls-cert and --tls-key, or neither")
    for path in (options.tls_cert, options.tls_key):
        if path is not None and not path.is_file():
            raise invalid("invalid_tls", f"tls: {path} is not a readable file")
    from sync.hq.devices import hq_key
    from sync.hq.stores import open_store

    store = open_store(options.db_url, options.key)
    try:
        hq_key(store)
    finally:
        store.close()
    _HQApplication(options).run()
