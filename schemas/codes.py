"""Code lists shared by every service: dossier statuses, channels, categories.

The numeric dossier codes are the ones provincial systems and the national
portal (DVCQG) already use (`TrangThaiHoSo`, `KenhThucHien`); see shared DOMAIN.md.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class DossierStatus(IntEnum):
    """`TrangThaiHoSo` of the national portal."""

    REGISTERED = 1  # mới đăng ký
    ACCEPTED = 2  # đã tiếp nhận
    REJECTED = 3  # từ chối tiếp nhận
    IN_PROGRESS = 4  # đang xử lý
    ADDITIONAL_DOCUMENTS_REQUESTED = 5  # yêu cầu bổ sung
    PAYMENT_REQUESTED = 6  # yêu cầu thực hiện nghĩa vụ tài chính
    WITHDRAWN = 7  # công dân rút hồ sơ
    STOPPED = 8  # dừng xử lý
    PROCESSED = 9  # đã xử lý xong
    RETURNED = 10  # đã trả kết quả

    @property
    def is_received(self) -> bool:
        return self not in (DossierStatus.REGISTERED, DossierStatus.REJECTED)

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATUSES

    @property
    def is_completed(self) -> bool:
        return self in COMPLETED_STATUSES

    @property
    def stage(self) -> Stage:
        """Where this status leaves the dossier (`Stage`: which of two states of the same time is the newer)."""
        if self is DossierStatus.REGISTERED:
            return Stage.REGISTERED
        return Stage.OPEN if self in OPEN_STATUSES else Stage.ENDED


class Stage(IntEnum):
    """Where a status leaves a dossier, in the order of its life: registered (1), open (2, 4, 5, 6), ended (rejected
    3, withdrawn 7, stopped 8, processed 9, returned 10).

    The one rule for ordering a dossier's states whose events have the same time (metrics' merge, notify's deadline
    tracker): the later stage is the newer state. A portal record's event time is its latest date, so a change that
    brings no date of its own (withdrawn or stopped without progress steps) has the time of the record before it;
    ordered by event id alone (a hash) it lost to that record about half the time, and the dossier stayed open and
    overdue (metrics audit: 132 of 200 withdrawn dossiers). Within one stage the later due date is the newer state:
    a request for more documents (5) moves the due date later and a portal record of it often brings no date of its
    own either, so the record before it (in progress, 4, due the earlier day) kept the dossier overdue about half the
    time (metrics audit, 2026-12-07: 13 of 40). Then a service keeps its own tie-break: metrics the greater event id
    (so its merge stays a total order), notify the later arrival. Two ended states of the same time (withdrawn
    against processed, 7 and 9) are ordered by that tie-break: either leaves the dossier closed, and metrics keeps a
    completion from the completed event whichever is newer, so no figure depends on it.
    """

    REGISTERED = 0
    OPEN = 1
    ENDED = 2


OPEN_STATUSES = frozenset(
    {
        DossierStatus.ACCEPTED,
        DossierStatus.IN_PROGRESS,
        DossierStatus.ADDITIONAL_DOCUMENTS_REQUESTED,
        DossierStatus.PAYMENT_REQUESTED,
    }
)
COMPLETED_STATUSES = frozenset({DossierStatus.PROCESSED, DossierStatus.RETURNED})


class Channel(StrEnum):
    """How a dossier was submitted. Portal `KenhThucHien` 1/2/3, plus our mobile team."""

    COUNTER = "counter"
    ONLINE = "online"
    POSTAL = "postal"
    MOBILE_TEAM = "mobile_team"


PORTAL_CHANNEL_CODES: dict[int, Channel] = {
    1: Channel.COUNTER,
    2: Channel.ONLINE,
    3: Channel.POSTAL,
    4: Channel.MOBILE_TEAM,
}


class Timeliness(StrEnum):
    """Decided when processing ends: end date vs due date (`NgayHenTra`)."""

    EARLY = "early"
    ON_TIME = "on_time"
    LATE = "late"


class AnnouncementCategory(StrEnum):
    DISEASE_OUTBREAK = "disease_outbreak"
    SEVERE_COLD = "severe_cold"
    STORM = "storm"
    CROP_DISEASE = "crop_disease"
    POLITICAL_LEGAL = "political_legal"
    PUBLIC_SERVICE = "public_service"
    CULTURAL_EVENT = "cultural_event"
    GENERAL = "general"

    @property
    def is_emergency(self) -> bool:
        return self in EMERGENCY_CATEGORIES


EMERGENCY_CATEGORIES = frozenset(
    {AnnouncementCategory.DISEASE_OUTBREAK, AnnouncementCategory.SEVERE_COLD, AnnouncementCategory.STORM}
)


class Priority(StrEnum):
    ROUTINE = "routine"
    HIGH = "high"
    EMERGENCY = "emergency"


class Locale(StrEnum):
    VI = "vi"
    KM = "km"
    EN = "en"


class SupportChannel(StrEnum):
    ZALO = "zalo"
    FACEBOOK = "facebook"
    PHONE = "phone"
    IN_PERSON = "in_person"
