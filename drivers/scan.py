"""What a reader produced: one ``Scan`` per swipe or code (docs/contract.md, ``decode``).

A scan is either a member card number or an error code. Error messages are fixed
sentences chosen here and never carry anything read from the card: that is how a
payment card's number cannot leak through a message (docs/architecture.md invariant 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["member", "error"]
Source = Literal["track1", "track2", "track3", "qr", "qr_dynamic"]

# For a multi-track swipe the source reported is the best track that read well:
# track 2 is numeric with a 4-bit LRC and is the one most readers fill in (ISO/IEC 7813).
SOURCE_PREFERENCE: tuple[Source, ...] = ("track2", "track1", "track3", "qr", "qr_dynamic")

UNREADABLE = "unreadable"
PAYMENT_CARD = "payment_card"
FOREIGN_CARD = "foreign_card"
INVALID_CODE = "invalid_code"
EXPIRED_CODE = "expired_code"

MESSAGES: dict[str, str] = {
    "reader_error": "the reader could not read the card; swipe it again",
    "garbled": "the swipe was garbled (missing sentinel or a character outside the track set)",
    "bad_lrc": "a track failed its longitudinal redundancy check; swipe it again",
    "conflict": "the tracks of one swipe carry different numbers; swipe it again",
    "noise": "the reader sent bytes that are neither a card nor a code; check its baud rate",
    "overlong": "the input was too long to be a card or a code and was discarded",
    "dropped": "the reader lost input mid-swipe; swipe it again",
    PAYMENT_CARD: "a payment card was swiped; its number was discarded",
    FOREIGN_CARD: "this is not a card of this programme",
    INVALID_CODE: "this programme number has a wrong check digit or format",
    "bad_signature": "the member code's signature is wrong",
    "no_secret": "the member code cannot be checked: no QR secret is configured",
    EXPIRED_CODE: "the member code has expired; ask the member to refresh it",
}


@dataclass(frozen=True)
class Scan:
    """One decoded swipe or code. ``at`` is the decoder's clock when it completed; it
    is metadata for the daemon (health, duplicates) and not part of the JSON."""

    kind: Kind
    card: str | None = None
    sources: tuple[Source, ...] = ()
    error: str | None = None
    message: str | None = None
    at: float = field(default=0.0, repr=False, compare=False)

    @property
    def source(self) -> Source | None:
        for candidate in SOURCE_PREFERENCE:
            if candidate in self.sources:
                return candidate
        return None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What makes two deliveries "the same code" for the duplicate rule."""
        return (self.kind, self.card, self.error)

    def to_json(self) -> dict[str, str]:
        if self.kind == "member" and self.card is not None and self.source is not None:
            return {"kind": "member", "card": self.card, "source": self.source}
        return {"kind": "error", "error": self.error or UNREADABLE, "message": self.message or ""}


def member(card: str, sources: tuple[Source, ...], at: float) -> Scan:
    ordered = tuple(s for s in SOURCE_PREFERENCE if s in sources)
    return Scan(kind="member", card=card, sources=ordered, at=at)


def failure(code: str, at: float, reason: str | None = None) -> Scan:
    """An error scan; ``reason`` picks a more precise message than the code's own."""
    return Scan(kind="error", error=code, message=MESSAGES[reason or code], at=at)
