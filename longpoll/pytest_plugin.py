"""The ``longpoll_engine`` fixture: the engine and the longpoll plugin for one test, no port bound.

Load it in a ``conftest.py``::

    pytest_plugins = ["longpoll.pytest_plugin"]

and ask for it in a test, or mark a module with
``pytestmark = pytest.mark.usefixtures("longpoll_engine")``.  Each test gets a
freshly started engine and a stopped one after it, so sessions (and their
generators) made in one test are closed before the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cherrypy.process import wspbus

from .testing import engine


@pytest.fixture
def longpoll_engine() -> Iterator[wspbus.Bus]:
    """``cherrypy.engine`` started with the longpoll plugin, without CherryPy's HTTP server (see
    :func:`longpoll.testing.engine`)."""
    with engine() as bus:
        yield bus
