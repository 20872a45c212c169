"""What the domain needs from the cache: a small lookup interface it defines itself.

The store's `CacheView` satisfies it (structurally: it never imports this module's
caller), and the domain's unit tests use a dict-backed fake. Records are plain dicts
as the back ends sent them (DESIGN 2.6); `source` is the country that sent them.
"""

from __future__ import annotations

from typing import Protocol


class CacheLookup(Protocol):
    def tagged(self, epc: str) -> list[tuple[str, str, dict]]:
        """Records naming this EPC as (source, role, record); role is driver/conveyance/equipment."""

    def record(self, source: str, kind: str, rid: str) -> dict | None:
        """One record by kind and id, or None."""

    def records(self, kind: str, rid: str) -> list[tuple[str, dict]]:
        """This kind and id from every source, as (source, record), sorted by source (trust:
        a carrier, driver or shipment counts when any source's record qualifies)."""

    def trips_of_conveyance(self, source: str, conveyance_id: str) -> list[dict]:
        """Trips whose `conveyance` is this id."""

    def trips_of_member(self, source: str, member_kind: str, member_id: str) -> list[dict]:
        """Trips that list this driver (member_kind "driver") or equipment id."""

    def lookouts(self, subject_kind: str, subject: str, now_ms: int) -> list[tuple[str, dict]]:
        """Unexpired lookouts on this subject, as (source, lookout)."""
