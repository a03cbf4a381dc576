"""Stopping a long run cleanly: SIGINT (Ctrl-C) and SIGTERM become ``Interrupted``, raised where the run can stop,
never in the middle of writing a result row.

``ResultsWriter.write`` runs inside ``deferred()``: a signal that arrives while a row is being written is held
until the row is on disk, then raised. The commands catch ``Interrupted`` and print how to resume.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator, Optional

_state = {"depth": 0, "pending": None}


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop by a signal (``signum``: signal.SIGINT or signal.SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum, frame):
    if _state["depth"]:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (when ``handle_signals`` is active) until the block is done, then raise it."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if not _state["depth"] and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``Interrupted`` (deferred past row writes). Outside the main
    thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _state["pending"] = None


def resume_hint(argv: Optional[list], replace: Optional[Callable[[list], list]] = None) -> str:
    """The command line that continues a run: ``argv`` (the words after ``bench``) passed through ``replace``."""
    import shlex

    words = list(argv or [])
    if replace:
        words = replace(words)
    return "bench " + shlex.join(words)


def with_resume(argv: list, run_id: str) -> list:
    """``argv`` with any ``--resume X`` / ``--resume=X`` replaced by ``--resume RUN_ID``."""
    out, skip = [], False
    for w in argv:
        if skip:
            skip = False
            continue
        if w == "--resume":
            skip = True
            continue
        if w.startswith("--resume="):
            continue
        out.append(w)
    return out + ["--resume", run_id]
