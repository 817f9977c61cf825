"""A script's results in the docs: written between two marker lines, the prose around them kept."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, start: str, end: str, body: str, title: str = "") -> None:
    """Put ``body`` between the ``start`` and ``end`` lines of ``path``, keeping everything around them; a file
    without the markers gets the section appended (a new file starts with ``title``)."""
    text = path.read_text() if path.exists() else title
    section = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text += section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
