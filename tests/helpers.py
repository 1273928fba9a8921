"""Small helpers the bad-input catalogues share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path


def write(path: Path, content: str | bytes) -> Path:
    """Write a test input file (text as UTF-8, or raw bytes), creating its folder; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path
