"""Keeping personal data out of what leaves the booth: masked EPCs, scrubbed names.

A support bundle or a terminal line may show the last four hex digits of a tag (enough
to tell two trucks apart while talking to the technician) but never a whole card or
transponder number, and never a person's name. `mask_epc` does one EPC; `Scrubber`
cleans free text (logs, config) of any long hex run and of every name, plate and VIN
the cache knows, matched as whole words without regard to case.
"""

from __future__ import annotations

import re
from typing import Iterable

# 16 to 62 hex digits: EPCs (96 to 496 bits); SHA-256 hashes (64) and UUID groups stay readable.
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{16,62}(?![0-9A-Fa-f])")
_WORD = re.compile(r"[^\W_][\w'.-]*")
# Cache fields that name a person or identify a vehicle or a card (DESIGN 2.6).
PERSONAL_FIELDS = ("name", "vin", "plate", "card_epc", "transponder_epc", "tag_epc", "number", "subject")


def mask_epc(epc: str | None) -> str:
    """`E2000000000000000000D001` -> `****D001`; short values are masked whole."""
    if not epc:
        return ""
    return "****" + epc[-4:] if len(epc) > 8 else "****"


def mask_hex_runs(text: str) -> str:
    return _HEX_RUN.sub(lambda m: mask_epc(m.group(0)), text)


class Scrubber:
    """Removes long hex runs and every known personal value from text."""

    def __init__(self, values: list[str] = ()):
        self._by_first: dict[str, list[tuple[str, ...]]] = {}
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        words = tuple(w.lower() for w in _WORD.findall(value or ""))
        if not words or (len(words) == 1 and len(words[0]) < 4):  # "Al" alone would eat half a log
            return
        self._by_first.setdefault(words[0], []).append(words)

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> "Scrubber":
        """Every personal value of these cache records (`StoreReader.cache_records()`)."""
        scrubber = cls()
        for record in records:
            for key in PERSONAL_FIELDS:
                value = record.get(key)
                if isinstance(value, str):
                    scrubber.add(value)
        return scrubber

    def __call__(self, text: str) -> str:
        text = mask_hex_runs(text)
        if not self._by_first:
            return text
        matches = list(_WORD.finditer(text))
        spans = []
        i = 0
        while i < len(matches):
            candidates = self._by_first.get(matches[i].group(0).lower())
            hit = 0
            for words in candidates or ():
                n = len(words)
                if n > hit and all(i + k < len(matches) and matches[i + k].group(0).lower() == words[k]
                                   for k in range(n)):
                    hit = n
            if hit:
                spans.append((matches[i].start(), matches[i + hit - 1].end()))
                i += hit
            else:
                i += 1
        for start, end in reversed(spans):
            text = text[:start] + "<removed>" + text[end:]
        return text
