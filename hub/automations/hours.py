"""Business hours: a time zone, opening times per weekday, and holidays closed all day.

``Hours.is_open(at)`` is pure (``at`` any aware datetime); ``hours_for(conn, conv)`` finds the
hours that apply to a conversation: its team's when the team has some, else its channel's, else
none (always open).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import schema

__all__ = ["DAYS", "Autoresponder", "Hours", "hours_for"]

BH = schema.business_hours
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")]


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class Autoresponder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    text: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = (
        "Thanks for your message. We are closed right now and will answer when we are back."
    )


class Hours(BaseModel):
    """Opening hours: ``weekly`` maps mon..sun to [from, to] intervals (HH:MM, to after from;
    24:00 ends the day); a day left out is closed, and so is every date in ``holidays``."""

    model_config = ConfigDict(extra="forbid")

    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="an IANA time zone, e.g. Europe/Berlin"
    )
    weekly: dict[str, Annotated[list[tuple[HHMM, HHMM]], Field(max_length=12)]] = Field(
        default_factory=dict, description="mon..sun: opening intervals [from, to] in local time"
    )
    holidays: list[date] = Field(default_factory=list, max_length=400, description="dates closed all day")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)")
        return value

    @model_validator(mode="after")
    def _intervals(self) -> Hours:
        for day, intervals in self.weekly.items():
            if day not in DAYS:
                raise ValueError(f"weekly: {day!r} is not a day; use {', '.join(DAYS)}")
            for start, end in intervals:
                if _minutes(end) <= _minutes(start):
                    raise ValueError(f"weekly.{day}: {start}-{end} ends before it starts")
        return self

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return False
        now = local.hour * 60 + local.minute
        return any(
            _minutes(start) <= now < _minutes(end)
            for start, end in self.weekly.get(DAYS[local.weekday()], [])
        )


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


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
