"""The labeling page: a small HTTP server on 127.0.0.1 (the standard library's `http.server`, one thread per request)
that shows the batch's texts with the model's suggestion, takes labels (keyboard shortcuts), shows progress and the
learning curve, and retrains in a background thread when a batch is labeled; the page polls `/api/state`.

`GET /` the page; `GET /api/state` labels so far, the batch left, training or not, the rounds' accuracy; `POST
/api/label` {"text", "label"} (label null: undo) stores one label at once; `POST /api/round` starts the next round now
(texts skipped stay unlabeled).
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import ConfigError, NlpTransferError
from .inputs import parse_label
from .loop import ActiveLoop
from .ner import check_tags, entity_types
from .page import PAGE

logger = logging.getLogger("nlptransfer")
HOST = "127.0.0.1"


class LabelingServer(ThreadingHTTPServer):
    daemon_threads = True
    loop: ActiveLoop | None = None
    training: threading.Thread | None = None
    message = ""
    error = ""
    writing = threading.Lock()

    def state(self) -> dict:
        loop = self.loop
        rounds = loop.folder.rounds()
        last = rounds[-1] if rounds else {}
        return {"label_names": loop.label_names, "multilabel": loop.multilabel, "tagging": loop.tagging,
                "entity_types": entity_types(loop.label_names) if loop.tagging else [],
                "labels": len(loop.folder.labels()),
                "round": last.get("round"), "items": loop.folder.unlabeled_in_batch(),
                "batch_size": len(loop.folder.batch()["items"]), "training": self.busy, "message": self.message,
                "error": self.error, "accuracy": last.get("validation_accuracy"),
                "curve": [[r["labels"], r.get("validation_accuracy")] for r in rounds
                          if r.get("validation_accuracy") is not None],
                "stop": (last.get("stop") or {}).get("message", "")}

    @property
    def busy(self) -> bool:
        return self.training is not None and self.training.is_alive()

    def start_round(self) -> bool:
        """Start the next round in a background thread unless one runs; whether one started."""
        if self.busy:
            return False

        def work() -> None:
            try:
                self.error = ""
                self.loop.run_round()
                self.message = "ready"
            except NlpTransferError as error:
                self.error = str(error)
            except Exception as error:  # shown on the page, the server goes on
                logger.exception("the round failed")
                self.error = f"the round failed: {error}"

        self.training = threading.Thread(target=work, name="active-round", daemon=True)
        self.training.start()
        return True

    def add_label(self, text: str, label) -> None:
        loop = self.loop
        if label is not None and loop.tagging:
            label = check_tags(text, label, loop.label_names, "the page's tags")
        elif label is not None:
            label = parse_label(label, loop.label_names, loop.multilabel, "the page's label")
        with self.writing:
            loop.folder.add_label(text, label, "page", max(0, len(loop.folder.rounds()) - 1))
        if label is not None and not loop.folder.unlabeled_in_batch():
            self.start_round()


class Handler(BaseHTTPRequestHandler):
    server: LabelingServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        logger.debug("page: " + format, *args)

    def send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, data: dict, status: int = 200) -> None:
        self.send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/":
            self.send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif self.path == "/api/state":
            self.send_json(self.server.state())
        else:
            self.send_json({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            if self.path == "/api/label" and isinstance(body.get("text"), str):
                self.server.add_label(body["text"], body.get("label"))
            elif self.path == "/api/round":
                self.server.start_round()
            else:
                self.send_json({"error": "not found"}, 404)
                return
        except (ValueError, NlpTransferError) as error:
            self.send_json({"error": str(error)}, 400)
            return
        self.send_json(self.server.state())


def bind(port: int) -> LabelingServer:
    """The page's server, bound to 127.0.0.1:`port` (0: a free one); a port in use is a ConfigError."""
    try:
        return LabelingServer((HOST, port), Handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {HOST} is in use; pass port=<another> (or port=0 for any free one)") \
                from None
        raise ConfigError(f"cannot serve the labeling page on {HOST}:{port} ({error.strerror}); pass another port=") \
            from None


def serve(server: LabelingServer, loop: ActiveLoop) -> None:
    """Serve the page until interrupted (Ctrl-C) or `server.shutdown()`; the first round starts at once when no
    batch waits for labels."""
    server.loop = loop
    loop.on_progress = lambda message: setattr(server, "message", message)
    if not loop.folder.unlabeled_in_batch():
        server.start_round()
    logger.info("labeling page: http://%s:%d/ (Ctrl-C stops; every label is stored as it is given)", HOST,
                server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    if server.training is not None:
        server.training.join()
