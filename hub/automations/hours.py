"""Business hours: a time zone, opening times per weekday, and holidays closed all day.

``Hours.is_open(at)`` is pure (``at`` any aware datetime); ``hours_for(conn, conv)`` finds the
hours that apply to a conversation: its team's when the team has some, else its channel's, else
none (always open).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema

__all__ = ["DAYS", "Autoresponder", "Hours", "Interval", "TimeZone", "hours_for", "hours_of"]

BH = schema.business_hours
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")]


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class Autoresponder(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = False
    text: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = (
        "Thanks for your message. We are closed right now and will answer when we are back."
    )


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    """The IANA zones the hub takes: all but the fixed-offset ``Etc/GMT+5`` kind (whose sign is
    the reverse of what it reads, and whose names generated clients cannot tell apart)."""
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(z for z in available_timezones() | {"UTC"} if not re.search(r"[+-]\d", z))
    return _ZONES


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Interval = Annotated[
    list[HHMM],
    Field(min_length=2, max_length=2, description="[from, to]; a to not after from runs past midnight"),
]


def _zone(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"{value!r} is not an IANA time zone the hub takes (e.g. Europe/Berlin, UTC)")
    return value


def zone_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "enum": sorted(_zones()),
        "description": "an IANA time zone, e.g. Europe/Berlin",
    }


TimeZone = Annotated[str, AfterValidator(_zone), WithJsonSchema(zone_schema())]


class Hours(BaseModel):
    """Opening hours: ``weekly`` maps mon..sun to [from, to] intervals (HH:MM local time; 24:00
    ends the day; an interval whose end is not after its start runs past midnight into the next
    day); a day left out is closed, and so is every date in ``holidays`` (local dates)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    timezone: TimeZone
    weekly: dict[Day, Annotated[list[Interval], Field(max_length=12)]] = Field(
        default_factory=dict, description="mon..sun: opening intervals [from, to] in local time"
    )
    holidays: list[Annotated[date, Field(strict=False)]] = Field(
        default_factory=list, max_length=400, description="dates closed all day"
    )

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return False
        now = local.hour * 60 + local.minute
        today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
        for start, end in self.weekly.get(today, []):  # type: ignore[call-overload]
            s, e = _minutes(start), _minutes(end)
            if (s <= now < e) if e > s else now >= s:
                return True
        # Yesterday's intervals that run past midnight.
        for start, end in self.weekly.get(yesterday, []):  # type: ignore[call-overload]
            s, e = _minutes(start), _minutes(end)
            if e <= s and now < e:
                return True
        return False


def hours_of(row: Any) -> Hours:
    return Hours.model_validate(
        {"timezone": row["timezone"], "weekly": row["weekly"], "holidays": row["holidays"]}
    )


async def hours_for(conn: AsyncConnection, conv: dict[str, Any]) -> dict[str, Any] | None:
    """The business hours row that applies to ``conv`` (its team's, else its channel's), or None."""
    scopes = [("channel", conv.get("channel_id"))]
    if conv.get("team"):
        scopes.insert(0, ("team", conv["team"]))
    for scope_type, scope_id in scopes:
        if not scope_id:
            continue
        row = (
            (
                await conn.execute(
                    sa.select(BH).where(BH.c.scope_type == scope_type, BH.c.scope_id == scope_id)
                )
            )
            .mappings()
            .first()
        )
        if row is not None:
            return dict(row)
    return None
