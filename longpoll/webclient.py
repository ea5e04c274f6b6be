"""Where the browser client's files are, so any CherryPy app can serve them.

They are package data (``longpoll/web/``), found through importlib.resources,
so a checkout, an editable install and a plain ``pip install`` all find them
the same way. Their sources and build (``web/`` in the repository) are not
shipped; neither is the demo page, which is the server product's.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def web_dir() -> Path:
    """The directory holding longpoll.js, longpoll.mjs and jquery.longpoll.js."""
    found = files(__package__ or "longpoll").joinpath("web")
    if not isinstance(found, Path):  # a zip import: CherryPy's staticdir serves only real directories
        raise RuntimeError(f"longpoll's browser client is not in a directory ({found}); install longpoll unzipped")
    return found


def web_config() -> dict[str, dict[str, object]]:
    """An app config serving the client's files: ``cherrypy.tree.mount(None, "/longpoll", longpoll.web_config())``."""
    return {"/": {"tools.staticdir.on": True, "tools.staticdir.dir": str(web_dir())}}
