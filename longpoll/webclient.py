"""Where the browser client (web/) lives, so any CherryPy app can serve it.

The files are beside the package in a checkout or an editable install, and
under ``<prefix>/share/longpoll/web`` once installed (setup.py's data_files).
"""

from __future__ import annotations

import sys
from pathlib import Path


def web_dir() -> Path:
    """The directory holding longpoll.js, longpoll.mjs and jquery.longpoll.js."""
    beside = Path(__file__).resolve().parent.parent / "web"
    return beside if beside.is_dir() else Path(sys.prefix) / "share" / "longpoll" / "web"


def web_config() -> dict[str, dict[str, object]]:
    """An app config serving the client's files: ``cherrypy.tree.mount(None, "/longpoll", longpoll.web_config())``."""
    return {"/": {"tools.staticdir.on": True, "tools.staticdir.dir": str(web_dir())}}
