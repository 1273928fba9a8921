"""Small helpers the bad-input catalogues share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path


def write(path: Path, content: str | bytes) -> Path:
    """Write a test input file (text as UTF-8, or raw bytes), creating its folder; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@contextmanager
def run_logs(caplog):
    """The run's INFO records in `caplog.messages`, once each (a run from Python propagates to caplog's root handler;
    after a command line in this process, which takes the process's logging, the package logger may not)."""
    package_logger = logging.getLogger("nlptransfer")
    attach = not package_logger.propagate
    if attach:
        package_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="nlptransfer"):
            yield
    finally:
        if attach:
            package_logger.removeHandler(caplog.handler)
