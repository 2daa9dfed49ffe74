"""Official administrative codes (34 provinces, 3,321 communes) after the July 2025 reform.

Loaded once from the `vietnam-provinces` package. On the wire a commune is five
digits ("02269") and a province two ("08").
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError
from vietnam_provinces import Province, Ward, WardCode


@cache
def commune_provinces() -> dict[str, str]:
    """Commune code -> province code, both zero-padded."""
    return {f"{int(w.code):05d}": f"{int(w.province_code):02d}" for w in Ward.iter_all()}


@cache
def province_names() -> dict[str, str]:
    return {f"{int(p.code):02d}": p.name for p in Province.iter_all()}


def commune_name(code: str) -> str:
    return str(Ward.from_code(WardCode(int(code))).name)


def communes_of(province: str) -> list[str]:
    return sorted(c for c, p in commune_provinces().items() if p == province)


def _padded(value: Any, width: int) -> str:
    if isinstance(value, bool):
        raise PydanticCustomError("invalid_code", "must be a numeric code, not a boolean")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str) and value.strip().isdigit():
        text = value.strip()
    else:
        raise PydanticCustomError("invalid_code", "must be a numeric code such as {example}", {"example": "0" * width})
    if len(text) > width:
        raise PydanticCustomError("invalid_code", "must have at most {width} digits", {"width": width})
    return text.zfill(width)


def _commune(value: Any) -> str:
    if type(value) is str and value in commune_provinces():  # the usual case: already the 5-digit code
        return value
    code = _padded(value, 5)
    if code not in commune_provinces():
        raise PydanticCustomError("unknown_commune", "commune code {code} is not in the official list", {"code": code})
    return code


def _province(value: Any) -> str:
    if type(value) is str and value in province_names():
        return value
    code = _padded(value, 2)
    if code not in province_names():
        raise PydanticCustomError(
            "unknown_province", "province code {code} is not in the official list", {"code": code})
    return code


CommuneCode = Annotated[
    str,
    BeforeValidator(_commune),
    Field(description="Official commune/ward code, 5 digits", examples=["02269"]),
]
ProvinceCode = Annotated[
    str,
    BeforeValidator(_province),
    Field(description="Official province code, 2 digits", examples=["08"]),
]
