"""The oversight sections of the policy document (docs/policy.md, docs/oversight.md): search limits, case
verification, anomaly-alert thresholds and random audit sampling.

Only the rules live here (validated with the rest of the policy, versioned and audited with it); the code that
applies them is facetrail.oversight. A threshold or limit of 0 turns that rule off. Hours are "HH:MM-HH:MM" in
the section's time zone and may wrap midnight ("22:00-06:00").
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hours(text: str) -> tuple[dt.time, dt.time] | None:
    """'07:00-19:00' -> (07:00, 19:00); '' -> None (any time). Raises ValueError on anything else."""
    if not text:
        return None
    m = _HOURS.match(text.strip())
    if not m:
        raise ValueError(f"hours must look like '07:00-19:00' (got {text!r})")
    start = dt.time(int(m.group(1)), int(m.group(2)))
    end_h, end_m = int(m.group(3)), int(m.group(4))
    end = dt.time(23, 59, 59, 999999) if end_h == 24 else dt.time(end_h, end_m)
    if start == end:
        raise ValueError(f"hours {text!r}: start and end are the same")
    return start, end


def within_hours(local: dt.datetime, hours: tuple[dt.time, dt.time] | None) -> bool:
    if hours is None:
        return True
    start, end = hours
    t = local.time()
    return start <= t < end if start < end else (t >= start or t < end)


def _check_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')") from None
    return value


class LimitRules(_Strict):
    per_user_per_day: int = Field(0, ge=0, le=100_000)
    per_user_per_week: int = Field(0, ge=0, le=1_000_000)
    per_case: int = Field(0, ge=0, le=100_000)
    hours: str = ""
    timezone: str = "UTC"
    on_exceed: Literal["refuse", "approval"] = "refuse"

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        return _check_zone(value)

    @property
    def any(self) -> bool:
        return bool(self.per_user_per_day or self.per_user_per_week or self.per_case or self.hours)


class CaseRules(_Strict):
    verification: Literal["off", "allow_list", "records_system"] = "off"
    check_offense: bool = True


class AlertRules(_Strict):
    window_days: int = Field(7, ge=1, le=90)
    peer_mad_factor: float = Field(5.0, ge=0, le=100)
    peer_min_searches: int = Field(20, ge=0, le=100_000)
    single_search_cases: int = Field(25, ge=0, le=100_000)
    probe_cases: int = Field(3, ge=0, le=1000)
    repeated_justification: int = Field(5, ge=0, le=100_000)
    usual_hours: str = "06:00-22:00"
    unusual_hour_searches: int = Field(3, ge=0, le=100_000)
    no_lead_searches: int = Field(5, ge=0, le=100_000)
    timezone: str = "UTC"

    @field_validator("usual_hours")
    @classmethod
    def _valid_hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        return _check_zone(value)


class SamplingRules(_Strict):
    period: Literal["day", "week", "month"] = "week"
    share: float = Field(0.05, ge=0, le=1)
    minimum: int = Field(1, ge=0, le=10_000)
