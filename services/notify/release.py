"""The service's dispatcher: deferred requests released from the ledger's due-time index, done entries routed.

`Dispatcher` (delivery.py) scans every deferred request each tick and writes done
entries by notification id alone. With a partition-aligned ledger (ADR 0020) the
service needs two things more, added here without changing the dispatcher's logic:

- each tick reads only the due prefix of the owned partitions' due index
  (`Ledger.due`), not every deferred request;
- a done entry must go to its commune's ledger partition: the ledger asks
  `commune_of(nid)`, answered from the job being delivered (a done entry is only
  ever written while its job is in flight);
- every hour, inside the fence, the owned deferrals last written over 30 days ago are
  written again (`Ledger.refresh_deferrals`): the topic deletes records after 60 days.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from schemas.notification import Audience
from services.notify import metrics
from services.notify.delivery import Dispatcher
from services.notify.jobs import Claim, Job
from services.notify.ledger import REWRITE_DEFERRED_AFTER

log = structlog.get_logger("notify.release")
REFRESH_EVERY_S = 3600.0


class OwnedDispatcher(Dispatcher):
    owns_partition: Callable[[int], bool] = staticmethod(lambda partition: True)
    """Which ledger partitions' deferred requests this worker releases (set by the app: the dossier partitions
    its routine consumer holds, the same rule as `owns` by commune)."""

    def commune_of(self, nid: str) -> str | None:
        """The commune of the notification `nid` if it is being delivered here (the ledger's router)."""
        job = self._inflight.get(nid)
        return job.request.commune if job is not None else None

    source_of: Callable[[int], object] = staticmethod(lambda partition: None)
    """The input partition a released request belongs to (set by the app: the dossier topic's partition `p`): its
    claim names it, so a job still queued when that partition is revoked is dropped, not sent beside the new owner
    (which releases it again from the ledger partition it now holds)."""

    def release_due(self) -> int:
        """Enqueue the due deferred requests of the owned partitions not already in flight, earliest first, until one
        meets its lane's backlog at `release_limit` (the rest wait for a later tick: a long outage's parked requests,
        or a night's deferrals, are not all taken into memory at once; a request behind them waits with them);
        returns how many."""
        released = 0
        now = self.clock()
        quiet = self.quiet.is_quiet(now)
        for partition, request in self.ledger.due_in(now, self.owns_partition, skip=self._inflight):
            if quiet and request.audience is Audience.CITIZEN and not request.is_emergency:
                continue  # due while quiet (a worker down overnight): stays deferred until the quiet hours end
            if self.release_limit is not None and self._held(request) >= self.release_limit:
                break
            claim = Claim(lambda: None, self.source_of(partition))
            self._enqueue(Job(request.model_copy(update={"not_before": None}), [claim]))
            released += 1
        return released

    async def refresh_deferrals(self) -> int:
        """Write again the owned deferrals last written over `REWRITE_DEFERRED_AFTER` ago, each inside the fence on
        its own, and only while its partition is still this worker's (checked after entering): a rebalance waits
        for one record at most, and no copy lands after the next owner's done entry."""
        written = 0
        for partition, nid in self.ledger.stale_deferrals(REWRITE_DEFERRED_AFTER, self.owns_partition,
                                                          skip=self._inflight):
            await self.gate.enter()
            try:
                written += await self.ledger.rewrite_deferral(partition, nid, self.owns_partition, skip=self._inflight)
            finally:
                self.gate.leave()
        if written:
            log.info("notify.deferrals_rewritten", count=written)
        return written

    async def _release_deferred(self) -> None:
        """Each tick, release what is due; entries deferred by another worker or before a restart or rebalance
        are in the owned partitions' index too, so whoever owns the commune now releases them. Every
        `REFRESH_EVERY_S`, long deferrals are written again."""
        next_refresh = time.monotonic() + REFRESH_EVERY_S
        while True:
            self.release_due()
            if time.monotonic() >= next_refresh:
                await self.refresh_deferrals()
                next_refresh = time.monotonic() + REFRESH_EVERY_S
            metrics.DEFERRED.set(len(self.ledger.deferred))
            await asyncio.sleep(self._release_every_s)
