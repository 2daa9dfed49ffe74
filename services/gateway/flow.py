"""How long the gateway kept a connection's reading paused (`PausedClock`): the client cannot send meanwhile, so its
body's clock stops (`services.gateway.connections`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.http.flow_control import FlowControl


class PausedClock(FlowControl):
    """uvicorn's flow control, also adding up how long the gateway kept reading paused: the client cannot send then."""

    def __init__(self, transport: asyncio.Transport, clock: Callable[[], float]) -> None:
        super().__init__(transport)
        self._clock = clock
        self._paused_at = 0.0
        self._paused_s = 0.0

    def pause_reading(self) -> None:
        if not self.read_paused:
            self._paused_at = self._clock()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self._paused_s += self._clock() - self._paused_at
        super().resume_reading()

    def paused_s(self) -> float:
        """Seconds spent paused so far, the pause in progress included."""
        return self._paused_s + (self._clock() - self._paused_at if self.read_paused else 0.0)
