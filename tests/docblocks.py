"""Code blocks of the docs, found by the marker above them, for tests that run them as written."""

from __future__ import annotations

from pathlib import Path

from tests.procs import ROOT


def block(page: str, marker: str, language: str) -> str:
    """The first ``language`` block after ``<!-- marker -->`` on a page (``docs/x.md``, ``README.md``)."""
    text = (ROOT / page).read_text()
    start = text.index(f"<!-- {marker} -->")
    fence = f"```{language}\n"
    body = text[text.index(fence, start) + len(fence):]
    return body[:body.index("```")]


def command(page: str, marker: str) -> str:
    """A one-line shell command from a block (its comment, if any, left out)."""
    lines = [line for line in block(page, marker, "sh").splitlines() if line.strip()]
    assert len(lines) == 1, f"{page} {marker}: one command expected, not {lines}"
    return lines[0].split("  #")[0].strip()


def write_readme_app(where: Path, *, redis_url: str | None = None) -> Path:
    """The README's complete app as news.py, on a Redis broker if given one (as its comment says to, to span
    processes)."""
    source = block("README.md", "embed-example", "python")
    if redis_url is not None:
        assert "longpoll.Broker()" in source
        source = source.replace("longpoll.Broker()", f"longpoll.Broker({redis_url!r})", 1)
    path = where / "news.py"
    path.write_text(source)
    return path
