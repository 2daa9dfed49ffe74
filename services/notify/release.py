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
  written again (`Ledger.refresh_deferrals`): the topic deletes records after 60 days. A task of its own: the
  release ticks go on while it writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container
from dataclasses import dataclass

import structlog

from schemas.notification import Audience, NotificationRequest
from services.notify import metrics
from services.notify.delivery import Dispatcher
from services.notify.jobs import RELEASED_ATTEMPTS, Claim, Job
from services.notify.ledger import REWRITE_DEFERRED_AFTER
from services.notify.ledger_entry import EntryTooLarge
from services.notify.outcomes import DEFERRAL_TOO_LARGE

log = structlog.get_logger("notify.release")
PASS_LIMIT = 10_000
"""Due requests `release_due` passes over in one tick at most (a full lane's, the quiet hours' citizens) before it
stops: a scan of a long outage's parked requests each second stays short."""
REFRESH_EVERY_S = 3600.0


@dataclass(frozen=True)
class _Besides:
    """The ids a release passes over: those in flight, and the deferral being rewritten (`rewriting`)."""

    inflight: Container[str]
    rewriting: str | None

    def __contains__(self, nid: object) -> bool:
        return nid == self.rewriting or nid in self.inflight


class OwnedDispatcher(Dispatcher):
    owns_partition: Callable[[int], bool] = staticmethod(lambda partition: True)
    """Which ledger partitions' deferred requests this worker releases (set by the app: the dossier partitions
    its routine consumer holds, the same rule as `owns` by commune)."""

    def commune_of(self, nid: str) -> str | None:
        """The commune of the notification `nid` if it is being delivered here (the ledger's router)."""
        job = self._inflight.get(nid)
        return job.request.commune if job is not None else None

    _rewriting: str | None = None
    """The deferral `refresh_deferrals` is writing again: not released meanwhile, so its copy cannot land after the
    done entry of a send of it (compaction would keep the copy, and it would come back due)."""

    source_of: Callable[[int], object] = staticmethod(lambda partition: None)
    """The input partition a released request belongs to (set by the app: the dossier topic's partition `p`): its
    claim names it, so a job still queued when that partition is revoked is dropped, not sent beside the new owner
    (which releases it again from the ledger partition it now holds)."""

    def release_due(self) -> int:
        """Enqueue the due deferred requests of the owned partitions not already in flight (partition by partition,
        earliest first in each) while their lane's backlog is under `release_limit`: a long outage's parked
        requests, or a night's deferrals, are not all taken into memory at once, and the input keeps room. A lane
        without room passes its requests over (unparsed) and the other lane's are still released; the scan stops
        when neither lane has room, or after `PASS_LIMIT` requests passed over in one tick. Every due emergency
        comes before any routine request (the ledger's index of them), so none waits behind those passed over.
        Returns how many."""
        released = passed = 0
        now = self.clock()
        quiet = self.quiet.is_quiet(now)
        besides = _Besides(self._inflight, self._rewriting)
        for partition, raw, urgent in self.ledger.due_raw_in(now, self.owns_partition, skip=besides):
            if self.release_limit is not None and not self._room(urgent):
                if not (self._room(True) or self._room(False)):
                    break
                passed += 1
                if passed >= PASS_LIMIT:
                    break
                continue
            request = NotificationRequest.model_validate_json(raw)
            if quiet and request.audience is Audience.CITIZEN and not request.is_emergency:
                passed += 1  # due while quiet (a worker down overnight): stays deferred until the quiet hours end
                if passed >= PASS_LIMIT:
                    break
                continue
            claim = Claim(lambda: None, self.source_of(partition))
            attempts = RELEASED_ATTEMPTS if self.park_s is not None else None
            self._enqueue(Job(request.model_copy(update={"not_before": None}), [claim], attempts=attempts))
            released += 1
        return released

    def _room(self, emergency: bool) -> bool:
        """Whether the lane has room for a released request (always, without a `release_limit`)."""
        held = self.emergency_backlog if emergency else self.routine_backlog
        return self.release_limit is None or held < self.release_limit

    async def refresh_deferrals(self) -> int:
        """Write again the owned deferrals last written over `REWRITE_DEFERRED_AFTER` ago, each inside the fence on
        its own, and only while its partition is still this worker's (checked after entering): a rebalance waits
        for one record at most, and no copy lands after the next owner's done entry. One that no longer fits the topic
        (written under a larger limit) is dead-lettered: it would be deleted with the topic's retention, unseen."""
        written = 0
        for partition, nid in self.ledger.stale_deferrals(REWRITE_DEFERRED_AFTER, self.owns_partition,
                                                          skip=self._inflight):
            source = self.source_of(partition)
            await self.gate.enter(source)
            try:
                self._rewriting = nid
                written += await self.ledger.rewrite_deferral(partition, nid, self.owns_partition, skip=self._inflight)
            except EntryTooLarge as exc:
                request = self.ledger.deferred[nid]
                self._too_large_to_defer(request, exc)
                await self._give_up(request, DEFERRAL_TOO_LARGE, 0)
            finally:
                self._rewriting = None
                self.gate.leave(source)
        if written:
            log.info("notify.deferrals_rewritten", count=written)
        return written

    def start(self) -> None:
        super().start()
        self._tasks.append(self._spawn("deferral-refresh", self._refresh_deferred()))

    async def _release_deferred(self) -> None:
        """Each tick, release what is due; entries deferred by another worker or before a restart or rebalance
        are in the owned partitions' index too, so whoever owns the commune now releases them."""
        while True:
            self.release_due()
            metrics.DEFERRED.set(len(self.ledger.deferred))
            await asyncio.sleep(self._release_every_s)

    async def _refresh_deferred(self) -> None:
        """Every `REFRESH_EVERY_S`, long deferrals are written again, in a task of its own (spawned, so a failure ends
        the run, as the release's): one acknowledged write each, inside the fence, while the release ticks go on
        (audit: awaited by the release loop, it held every tick, a due storm warning included, for the whole pass)."""
        while True:
            await asyncio.sleep(REFRESH_EVERY_S)
            await self.refresh_deferrals()
