"""What longpoll reaches for in its dependencies' private parts is checked at start-up, and a change says so.

The versions installed pass; a version without what longpoll relies on is
played here by taking that very thing away (a ThreadPool without its
``_threads``, an a2wsgi that runs requests in a fresh context), and the check
must then fail, naming the dependency and its version, instead of letting the
start go on to do nothing where it should (a hold gate sized for no pool, a
handoff that never reaches the app's thread).
"""

from __future__ import annotations

import asyncio
import contextvars
from importlib.metadata import version

import pytest

from longpoll import compat
from longpoll.server import compat as server_compat


def test_the_installed_dependencies_pass():
    compat.check()
    asyncio.run(compat.check_a2wsgi())
    server_compat.check()


def test_a_cheroot_pool_without_its_threads_fails_the_check(monkeypatch):
    from cheroot.workers import threadpool

    class Changed(threadpool.ThreadPool):
        def __init__(self, server, min=10, **kwargs):  # noqa: A002  (cheroot's own name)
            super().__init__(server, min=min, **kwargs)
            del self._threads

    monkeypatch.setattr(threadpool, "ThreadPool", Changed)
    with pytest.raises(compat.Incompatible, match=rf"cheroot {version('cheroot')} does not have"):
        compat.check()


def test_an_a2wsgi_that_loses_the_callers_context_fails_the_check(monkeypatch):
    import a2wsgi.wsgi

    monkeypatch.setattr(a2wsgi.wsgi.contextvars, "copy_context", contextvars.Context)  # a fresh, empty context
    wanted = rf"a request run in a copy .* which a2wsgi {version('a2wsgi')} does not have"
    with pytest.raises(compat.Incompatible, match=wanted):
        asyncio.run(compat.check_a2wsgi())


def test_a_granian_without_its_signal_helpers_fails_the_check(monkeypatch):
    from granian import _signals

    monkeypatch.delattr(_signals, "_get_signals")
    with pytest.raises(compat.Incompatible, match=rf"granian {version('granian')} does not have"):
        server_compat.check()
