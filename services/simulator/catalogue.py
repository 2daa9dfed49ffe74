"""Static material the simulator draws from: procedures, places, names, announcement texts.

Procedure codes have the national catalogue's shape ("1.001193") and names of
procedures communes really handle; figures (processing days, fees, shares) are
plausible, not official. Names are fake but follow Kinh, Tày/Nùng and Khmer
naming patterns.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codes import AnnouncementCategory, Channel, SupportChannel


@dataclass(frozen=True)
class Procedure:
    code: str
    name: str
    field_code: str
    working_days: int  # 0 = returned the same working day
    fee_vnd: int
    weight: float
    online_share: float  # of this procedure's dossiers, submitted online
    payment_share: float = 0.0  # dossiers that wait on a financial obligation (status 6)


PROCEDURES: tuple[Procedure, ...] = (
    Procedure("1.001193", "Đăng ký khai sinh", "HoTich", 0, 0, 16, 0.55),
    Procedure("1.000894", "Đăng ký kết hôn", "HoTich", 0, 0, 5, 0.35),
    Procedure("1.000656", "Đăng ký khai tử", "HoTich", 0, 0, 4, 0.45),
    Procedure("1.004227", "Cấp Giấy xác nhận tình trạng hôn nhân", "HoTich", 3, 15_000, 7, 0.6),
    Procedure("1.001022", "Cấp bản sao trích lục hộ tịch", "HoTich", 0, 8_000, 8, 0.65),
    Procedure("2.000815", "Chứng thực bản sao từ bản chính giấy tờ, văn bản", "ChungThuc", 0, 2_000, 22, 0.35),
    Procedure("2.000884", "Chứng thực chữ ký trong các giấy tờ, văn bản", "ChungThuc", 0, 10_000, 6, 0.2),
    Procedure("1.004221", "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất", "DatDai",
              10, 30_000, 6, 0.45, 0.5),
    Procedure("1.000775", "Đăng ký, cấp Giấy chứng nhận quyền sử dụng đất lần đầu", "DatDai", 20, 100_000, 3, 0.4, 0.7),
    Procedure("2.001947", "Cấp giấy phép xây dựng đối với nhà ở riêng lẻ", "XayDung", 15, 75_000, 3, 0.55),
    Procedure("1.001776", "Thực hiện, điều chỉnh, thôi hưởng trợ cấp xã hội hằng tháng", "BaoTroXaHoi", 15, 0, 4, 0.4),
    Procedure("2.000575", "Đăng ký hộ kinh doanh", "DangKyKinhDoanh", 3, 100_000, 4, 0.7),
    Procedure("1.003005", "Cấp giấy chứng nhận con nuôi, xác nhận hỗ trợ học tập", "GiaoDucDaoTao", 5, 0, 2, 0.5),
)

DOCUMENTS: dict[str, tuple[str, ...]] = {
    "HoTich": ("Tờ khai đăng ký", "Giấy chứng sinh", "Căn cước công dân", "Giấy tờ chứng minh nơi cư trú"),
    "ChungThuc": ("Bản chính giấy tờ", "Văn bản cần chứng thực"),
    "DatDai": ("Đơn đăng ký biến động", "Giấy chứng nhận quyền sử dụng đất", "Hợp đồng chuyển nhượng",
               "Tờ khai lệ phí trước bạ"),
    "XayDung": ("Đơn đề nghị cấp giấy phép", "Bản vẽ thiết kế", "Giấy tờ về quyền sử dụng đất"),
    "BaoTroXaHoi": ("Tờ khai đề nghị trợ giúp xã hội", "Giấy xác nhận khuyết tật"),
    "DangKyKinhDoanh": ("Giấy đề nghị đăng ký hộ kinh doanh", "Căn cước công dân chủ hộ"),
    "GiaoDucDaoTao": ("Đơn đề nghị", "Giấy xác nhận của nhà trường"),
}
MISSING_DOCUMENT_REQUESTS = (
    "Bản sao giấy tờ chứng minh nơi cư trú", "Bản vẽ sơ đồ thửa đất có chữ ký các hộ liền kề",
    "Giấy ủy quyền có chứng thực", "Ảnh chụp rõ mặt sau căn cước công dân", "Xác nhận của trưởng thôn",
)
REJECTION_REASONS = (
    "Thủ tục không thuộc thẩm quyền giải quyết của UBND xã", "Hồ sơ không đúng mẫu quy định",
    "Thiếu giấy tờ bắt buộc theo quy định", "Hồ sơ đã được nộp trước đó",
)

CHANNEL_WEIGHTS: dict[Channel, float] = {Channel.COUNTER: 0.36, Channel.MOBILE_TEAM: 0.1, Channel.POSTAL: 0.04}
"""Non-online channels; the online share comes from each procedure (overall ~50%)."""

VILLAGE_STEMS = (
    "Nà Pàn", "Khuổi Cốp", "Pác Cáp", "Bản Chắt", "Còn Quan", "Nà Lầu", "Phai Xá", "Khau Ràng", "Nà Thang",
    "Pò Háng", "Kéo Coong", "Bó Luông", "Lũng Vài", "Tồng Chúp", "Nà Sla", "Khòn Pịt", "Pá Danh", "Nà Tềnh",
    "Trung Tâm", "Đồng Tâm", "Tân Lập", "Hợp Thành", "Bản Đon", "Nà Mò", "Khun Slam", "Pò Mã", "Cốc Phường",
)

KINH_SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Vũ", "Đặng", "Bùi", "Đỗ", "Ngô", "Dương")
TAY_NUNG_SURNAMES = ("Hoàng", "Nông", "Lộc", "Lăng", "Vi", "Triệu", "Hà", "Lương", "Chu", "Mông", "Hứa", "Lý")
MALE_MIDDLE = ("Văn", "Đức", "Minh", "Quang", "Văn", "Thành")
FEMALE_MIDDLE = ("Thị", "Thu", "Ngọc", "Thị", "Thanh", "Hồng")
MALE_GIVEN = ("An", "Bình", "Cường", "Dũng", "Hùng", "Nam", "Quân", "Sơn", "Tuấn", "Thắng", "Khánh", "Pao", "Slình")
FEMALE_GIVEN = ("Hà", "Hạnh", "Hoa", "Lan", "Linh", "Mai", "Phương", "Thảo", "Vân", "Yến", "Nhung", "Dung", "Mỷ")
KHMER_NAMES = (
    "Thạch Sóc Khol", "Sơn Thị Sa Rinh", "Kim Thị Sô Phia", "Danh Hoàng Sơn", "Lâm Sa Vên", "Châu Thị Srey Mom",
    "Thạch Thị Sà Ni", "Sơn Chanh Đa", "Kim Sà Rết",
)
FOREIGN_NAMES = ("Daniel Hughes", "Emma Clarke", "Sophie Martin", "Liam O'Brien", "Anna Schmidt", "Mark Evans")
PHONE_PREFIXES = (
    "032", "033", "034", "035", "036", "037", "038", "039", "086", "096", "097", "098", "081", "082", "083",
    "084", "085", "088", "091", "094", "070", "076", "077", "078", "079", "089", "090", "093", "056", "058",
)

TRAINING_TOPICS = (
    "Kích hoạt tài khoản định danh điện tử VNeID mức 2", "Thanh toán không dùng tiền mặt",
    "Nộp hồ sơ trực tuyến trên Cổng Dịch vụ công quốc gia", "Nhận diện lừa đảo qua mạng",
    "Sử dụng Zalo nhận thông báo của xã", "Tra cứu kết quả giải quyết hồ sơ trên điện thoại",
)
VISIT_ACTIVITIES = (
    "Hướng dẫn nộp hồ sơ trực tuyến", "Kích hoạt VNeID mức 2", "Tiếp nhận hồ sơ tại chỗ",
    "Hướng dẫn thanh toán trực tuyến", "Cài đặt ứng dụng VNeID",
)
SUPPORT_WEIGHTS: dict[SupportChannel, float] = {
    SupportChannel.ZALO: 0.5, SupportChannel.PHONE: 0.25, SupportChannel.FACEBOOK: 0.2, SupportChannel.IN_PERSON: 0.05,
}

ANNOUNCEMENT_WEIGHTS: dict[AnnouncementCategory, float] = {
    AnnouncementCategory.PUBLIC_SERVICE: 0.25, AnnouncementCategory.POLITICAL_LEGAL: 0.15,
    AnnouncementCategory.CROP_DISEASE: 0.13, AnnouncementCategory.CULTURAL_EVENT: 0.12,
    AnnouncementCategory.GENERAL: 0.23, AnnouncementCategory.STORM: 0.04,
    AnnouncementCategory.SEVERE_COLD: 0.05, AnnouncementCategory.DISEASE_OUTBREAK: 0.03,
}
ANNOUNCEMENT_TITLES: dict[AnnouncementCategory, tuple[str, ...]] = {
    AnnouncementCategory.STORM: (
        "Khẩn cấp: bão đổ bộ, người dân chằng chống nhà cửa, không ra suối khi mưa lũ",
        "Cảnh báo lũ quét và sạt lở đất tại các thôn ven suối",
    ),
    AnnouncementCategory.SEVERE_COLD: (
        "Rét đậm, rét hại: che chắn chuồng trại, giữ ấm cho trâu bò, không thả rông gia súc",
        "Băng giá trên đỉnh núi: hạn chế lên núi, bảo vệ cây trồng và vật nuôi",
    ),
    AnnouncementCategory.DISEASE_OUTBREAK: (
        "Dịch tả lợn châu Phi: không mua bán, vận chuyển, giết mổ lợn bệnh",
        "Dịch sốt xuất huyết: diệt lăng quăng, phát quang bụi rậm quanh nhà",
    ),
    AnnouncementCategory.CROP_DISEASE: ("Phòng trừ sâu keo mùa thu hại ngô", "Phòng bệnh thán thư trên cây hồi"),
    AnnouncementCategory.POLITICAL_LEGAL: ("Tuyên truyền Luật Đất đai năm 2024", "Kết quả kỳ họp Hội đồng nhân dân xã"),
    AnnouncementCategory.PUBLIC_SERVICE: (
        "Hướng dẫn nộp hồ sơ trực tuyến và kích hoạt tài khoản VNeID mức 2",
        "Trung tâm Phục vụ hành chính công xã làm việc thêm 30 phút sáng và chiều",
        "Tổ hành chính công lưu động về thôn tiếp nhận hồ sơ",
    ),
    AnnouncementCategory.CULTURAL_EVENT: ("Lễ hội Lồng tồng mừng xuân", "Giải bóng chuyền thanh niên các thôn"),
    AnnouncementCategory.GENERAL: ("Lịch tiêm chủng mở rộng trong tháng", "Lịch thu gom rác thải sinh hoạt"),
}
BROADCAST_FAILURES = (
    "Mất kết nối 4G tới cụm loa", "Mất điện lưới khu vực", "Loa không phản hồi xác nhận phát",
    "Bộ thu FM lỗi tần số",
)
