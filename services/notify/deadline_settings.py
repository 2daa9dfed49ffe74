"""The deadline tracker's own settings (`NOTIFY_DEADLINE_*`), beside notify's (`NotifySettings`: tick, web port)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

RUN_PREFIX = "pid-"
"""A tracker process's store folder under `state_dir` is `pid-<its pid>-<random>` (`services.common.run_folder`):
two trackers sharing a state folder (on one machine, or in containers on one volume) never share a store."""


class DeadlineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_DEADLINE_", frozen=True, extra="ignore",
                                      allow_inf_nan=False)

    state_dir: Path = Field(default=Path(tempfile.gettempdir()) / "commune-bus-notify-deadlines",
                            description="Where the tracker keeps its partition stores (rebuilt at each start)")
    batch_max_records: int = Field(default=2_000, ge=1, le=1_000_000)
    ack_timeout_s: float = Field(default=15.0, gt=0, le=600,
                                 description="How long alerts, changelog records and commits may wait for the broker "
                                             "before the run ends and restarts (an outage)")
    clock_ahead_s: float = Field(default=0.0, ge=0, le=172_800,
                                 description="Seconds the tracker's clock runs ahead of the wall clock: 0 in "
                                             "production. Overdue begins at the end of a due day (00:00 in Vietnam), "
                                             "so tests and drills set it to bring that midnight within seconds (up to "
                                             "two days: a restarted tracker's clock set further than the first's)")
