"""Masking for the rare log line that must hint at a contact: keep only what identifies nobody."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """"0912345678" -> "09******78"."""
    if not phone:
        return "-"
    digits = phone.strip()
    return digits[:2] + "*" * max(0, len(digits) - 4) + digits[-2:] if len(digits) > 4 else "*" * len(digits)


def mask_name(name: str | None) -> str:
    """"Nguyễn Văn An" -> "N. V. A." (initials only)."""
    if not name:
        return "-"
    return " ".join(part[0] + "." for part in name.split())


def mask_email(email: str | None) -> str:
    if not email or "@" not in email:
        return "-"
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"
