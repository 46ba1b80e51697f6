"""Turns on a model: one holder at a time, first come first served.

The batch scheduler takes a turn for each of its steps and an adaptive request for each of its
tokens, so neither can starve the other: whoever asked first goes next. A plain lock promises no
order (a thread that releases and at once acquires again usually wins); a ticket lock does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ModelTurns:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def acquire(self) -> None:
        """Wait for this caller's turn (callers are served in the order they arrived)."""
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                self._changed.wait()

    def release(self) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()

    @contextmanager
    def turn(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def pass_turn(self) -> None:
        """Inside a turn: let everyone already waiting go first, then go on."""
        self.release()
        self.acquire()
