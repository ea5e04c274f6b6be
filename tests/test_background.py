"""The one background loop: a step that raises is reported, backed off and tried again; the thread never dies."""

from __future__ import annotations

import threading

from longpoll.background import Worker


def test_a_failing_step_is_reported_once_per_failure_retried_and_recovered_from():
    heard: list[object] = []
    recovered = threading.Event()
    calls = iter([ValueError("one"), ValueError("two"), None, None])
    ran_after = threading.Event()

    def step() -> None:
        error = next(calls, None)
        if error is not None:
            raise error
        if recovered.is_set():
            ran_after.set()

    worker = Worker("test-worker", step, failed=lambda exc, n: heard.append((str(exc), n)),
                    recovered=recovered.set)
    worker.start()
    try:
        assert recovered.wait(10) and ran_after.wait(10)
        assert heard == [("one", 1), ("two", 2)] and worker.failures == 0 and worker.running
    finally:
        worker.stop()
    assert not worker.running


def test_a_worker_whose_owner_is_dropped_ends():
    import gc

    class Owner:
        def __init__(self) -> None:
            self.steps = 0
            self.worker = Worker("test-owned", self.step)

        def step(self) -> None:
            self.steps += 1
            self.worker.stopping.wait(0.01)

    owner = Owner()
    owner.worker.start()
    thread = owner.worker._thread
    assert thread is not None
    del owner
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
