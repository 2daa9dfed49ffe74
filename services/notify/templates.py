"""Message templates per notification kind and locale (vi default, km, en), with fallback to Vietnamese.

Each template is (subject, text); SMS and Zalo use the text, e-mail both.
`str.format` placeholders name the rule's parameters; a missing one is a bug (KeyError).
Whatever the parameters hold, the subject is one line without control characters and
without RFC 2047 encoded words (it becomes an e-mail header, whose parser decodes
`=?charset?q?=0D=0A?=` into a real line break: no header injection), and the text keeps
only its line breaks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.codes import Locale
from schemas.limits import CONTROL
from schemas.notification import NotificationKind as K
from services.notify.params import shortened

Template = tuple[str, str]

TEMPLATES: dict[K, dict[Locale, Template]] = {
    K.DOSSIER_ACCEPTED: {
        Locale.VI: ("Hồ sơ {dossier_code} đã được tiếp nhận",
                    "Hồ sơ {dossier_code} ({procedure}) đã được tiếp nhận. Ngày hẹn trả kết quả: {due_date}."),
        Locale.KM: ("ឯកសារ {dossier_code} ត្រូវបានទទួល",
                    "ឯកសារ {dossier_code} ({procedure}) ត្រូវបានទទួលហើយ។ ថ្ងៃណាត់ទទួលលទ្ធផល៖ {due_date}។"),
        Locale.EN: ("Dossier {dossier_code} received",
                    "Your dossier {dossier_code} ({procedure}) was received. Come back for the result on {due_date}."),
    },
    K.DOCUMENTS_REQUESTED: {
        Locale.VI: ("Hồ sơ {dossier_code} cần bổ sung",
                    "Hồ sơ {dossier_code} cần bổ sung: {documents}. Ngày hẹn trả mới: {due_date}."),
        Locale.KM: ("ឯកសារ {dossier_code} ត្រូវការបំពេញបន្ថែម",
                    "ឯកសារ {dossier_code} ត្រូវការបំពេញបន្ថែម៖ {documents}។ ថ្ងៃណាត់ថ្មី៖ {due_date}។"),
        Locale.EN: ("Dossier {dossier_code}: documents needed",
                    "Dossier {dossier_code} needs: {documents}. New result date: {due_date}."),
    },
    K.PAYMENT_REQUESTED: {
        Locale.VI: ("Hồ sơ {dossier_code}: nộp phí, lệ phí",
                    "Hồ sơ {dossier_code}: vui lòng nộp phí, lệ phí {amount} đồng để tiếp tục xử lý."),
        Locale.KM: ("ឯកសារ {dossier_code}៖ បង់ថ្លៃសេវា",
                    "ឯកសារ {dossier_code}៖ សូមបង់ថ្លៃសេវា {amount} ដុង ដើម្បីបន្តដំណើរការ។"),
        Locale.EN: ("Dossier {dossier_code}: fee due",
                    "Dossier {dossier_code}: please pay the fee of {amount} VND to continue processing."),
    },
    K.DOSSIER_REJECTED: {
        Locale.VI: ("Hồ sơ {dossier_code} không được tiếp nhận",
                    "Hồ sơ {dossier_code} không được tiếp nhận. Lý do: {reason}."),
        Locale.KM: ("ឯកសារ {dossier_code} មិនត្រូវបានទទួល",
                    "ឯកសារ {dossier_code} មិនត្រូវបានទទួលទេ។ មូលហេតុ៖ {reason}។"),
        Locale.EN: ("Dossier {dossier_code} not accepted",
                    "Dossier {dossier_code} was not accepted. Reason: {reason}."),
    },
    K.RESULT_READY: {
        Locale.VI: ("Hồ sơ {dossier_code} đã có kết quả",
                    "Hồ sơ {dossier_code} ({procedure}) đã có kết quả. Mời ông/bà đến nhận hoặc tra cứu trực tuyến."),
        Locale.KM: ("ឯកសារ {dossier_code} មានលទ្ធផលហើយ",
                    "ឯកសារ {dossier_code} ({procedure}) មានលទ្ធផលហើយ។ សូមអញ្ជើញមកទទួល ឬពិនិត្យតាមអនឡាញ។"),
        Locale.EN: ("Dossier {dossier_code}: result ready",
                    "The result of dossier {dossier_code} ({procedure}) is ready. Collect it or check online."),
    },
    K.RESULT_RETURNED: {
        Locale.VI: ("Hồ sơ {dossier_code} đã trả kết quả",
                    "Hồ sơ {dossier_code} ({procedure}) đã trả kết quả ngày {date}. Xin cảm ơn."),
        Locale.KM: ("ឯកសារ {dossier_code} បានប្រគល់លទ្ធផល",
                    "ឯកសារ {dossier_code} ({procedure}) បានប្រគល់លទ្ធផលនៅថ្ងៃ {date}។ សូមអរគុណ។"),
        Locale.EN: ("Dossier {dossier_code}: result returned",
                    "The result of dossier {dossier_code} ({procedure}) was returned on {date}. Thank you."),
    },
    K.DUE_SOON: {
        Locale.VI: ("Hồ sơ {dossier_code} sắp đến hạn",
                    "Hồ sơ {dossier_code} đến hạn trả vào {due_date}, còn dưới 1 ngày làm việc."),
        Locale.EN: ("Dossier {dossier_code} due soon",
                    "Dossier {dossier_code} is due on {due_date}, within one working day."),
    },
    K.OVERDUE: {
        Locale.VI: ("Hồ sơ {dossier_code} quá hạn",
                    "Hồ sơ {dossier_code} đã quá hạn trả ({due_date}) và chưa hoàn thành."),
        Locale.EN: ("Dossier {dossier_code} overdue",
                    "Dossier {dossier_code} is overdue (due {due_date}) and still open."),
    },
    K.VISIT_TOMORROW: {
        Locale.VI: ("Tổ lưu động đến {village} ngày mai",
                    "Tổ hành chính công lưu động sẽ đến {village} vào {date}. Bà con mang giấy tờ cần làm thủ tục."),
        Locale.KM: ("ក្រុមចល័តមក {village} ថ្ងៃស្អែក",
                    "ក្រុមរដ្ឋបាលចល័តនឹងមកដល់ {village} នៅ {date}។ សូមយកឯកសារចាំបាច់មកជាមួយ។"),
        Locale.EN: ("Mobile team in {village} tomorrow",
                    "The mobile public-service team visits {village} on {date}. Bring the papers you need."),
    },
    K.VISIT_SUMMARY: {
        Locale.VI: ("Tổ lưu động: kết quả tại {village}",
                    "Tổ {team} tại {village}: {households} hộ, {people} người được hỗ trợ, {dossiers} hồ sơ, "
                    "{accounts} tài khoản VNeID."),
        Locale.EN: ("Mobile team summary: {village}",
                    "Team {team} in {village}: {households} households, {people} people helped, {dossiers} dossiers, "
                    "{accounts} VNeID accounts."),
    },
    K.ANNOUNCEMENT_SCHEDULED: {
        Locale.VI: ("Lịch phát thanh: {title}", "Cụm loa {clusters}: phát \"{title}\" lúc {date}."),
        Locale.EN: ("Broadcast scheduled: {title}",
                    "Loudspeaker clusters {clusters}: broadcast \"{title}\" at {date}."),
    },
    K.BROADCAST_FAILED: {
        Locale.VI: ("Phát thanh lỗi: cụm {cluster}",
                    "Cụm loa {cluster} phát thông báo {announcement} không thành công: {reason}."),
        Locale.EN: ("Broadcast failed: cluster {cluster}",
                    "Cluster {cluster} failed to broadcast {announcement}: {reason}."),
    },
    K.EMERGENCY: {
        Locale.VI: ("KHẨN CẤP: {title}", "KHẨN CẤP: {title}. Theo dõi loa truyền thanh của xã từ {date}."),
        Locale.KM: ("បន្ទាន់៖ {title}", "បន្ទាន់៖ {title}។ សូមស្តាប់វិទ្យុឃុំចាប់ពី {date}។"),
        Locale.EN: ("EMERGENCY: {title}", "EMERGENCY: {title}. Listen to the commune loudspeakers from {date}."),
    },
}


FEE_UNKNOWN: dict[Locale, Template] = {
    Locale.VI: (TEMPLATES[K.PAYMENT_REQUESTED][Locale.VI][0],
                "Hồ sơ {dossier_code}: vui lòng nộp phí, lệ phí để tiếp tục xử lý."),
    Locale.KM: (TEMPLATES[K.PAYMENT_REQUESTED][Locale.KM][0],
                "ឯកសារ {dossier_code}៖ សូមបង់ថ្លៃសេវា ដើម្បីបន្តដំណើរការ។"),
    Locale.EN: (TEMPLATES[K.PAYMENT_REQUESTED][Locale.EN][0],
                "Dossier {dossier_code}: please pay the fee to continue processing."),
}
"""A payment request whose event lists no fee (a progress update carries none): without an amount, which read
"pay the fee of 0 VND" (notify audit)."""


@dataclass(frozen=True)
class Rendered:
    locale: Locale
    subject: str
    text: str


_NOT_IN_SUBJECT = re.compile(f"[{CONTROL}]+")
ENCODED_WORD_START = "=?"
NEUTRAL_START = "=\u200b?"
"""A zero-width space between `=` and `?`: the text reads the same, and no encoded word can start there."""
_NOT_IN_TEXT = re.compile("[" + r"\x00-\x09\x0b-\x1f" + CONTROL.removeprefix(r"\x00-\x1f") + "]+")
"""Control characters but the line feed (x0a): a CR/LF pair becomes one line feed."""


ZNS_PARAM_CHARS = 90
"""The longest value a ZNS template parameter is given: what a ZNS table cell holds (3 to 90 characters), where a
template's parameters mostly sit; Zalo refuses a longer value than the template registered, and notify then falls
back to SMS or fails (notify audit: `procedure` and `reason` went whole, up to 1,000 characters)."""


def zns_params(kind: K, params: dict[str, str]) -> dict[str, str]:
    """The template data ZNS is given: each value on one line, without control, bidirectional-override or line
    separator characters (Zalo shows them as they come: an override reversed how a reason or a number read; the
    SMS and e-mail texts never had them), and at most `ZNS_PARAM_CHARS` characters ("…" ends a cut one). A payment
    without fees has no amount: its template names none."""
    shown = {k: v for k, v in params.items() if k != "amount"} if fee_unknown(kind, params) else params
    clean = {k: " ".join(_NOT_IN_SUBJECT.sub(" ", v).split()) or "-" for k, v in shown.items()}
    return {k: shortened(v, ZNS_PARAM_CHARS) for k, v in clean.items()}


def fee_unknown(kind: K, params: dict[str, str]) -> bool:
    """A payment request whose event lists no fee (its amount "0"): said without an amount (`FEE_UNKNOWN`)."""
    return kind is K.PAYMENT_REQUESTED and params.get("amount") == "0"


def render(kind: K, locale: Locale, params: dict[str, str]) -> Rendered:
    """The message in `locale`, or in Vietnamese when that locale has no template for `kind`."""
    by_locale = FEE_UNKNOWN if fee_unknown(kind, params) else TEMPLATES[kind]
    chosen = locale if locale in by_locale else Locale.VI
    subject, text = by_locale[chosen]
    one_line = _NOT_IN_SUBJECT.sub(" ", subject.format(**params)).replace(ENCODED_WORD_START, NEUTRAL_START)
    return Rendered(chosen, one_line, _NOT_IN_TEXT.sub(" ", text.format(**params).replace("\r\n", "\n")))
