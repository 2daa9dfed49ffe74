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
