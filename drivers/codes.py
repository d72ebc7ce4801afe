"""Member codes read by a QR or barcode scanner: static and dynamic.

A static code is the card number itself, optionally behind an AIM symbology
identifier (ISO/IEC 15424: ``]`` + code character + modifier, e.g. ``]Q1`` for QR).

A dynamic code is shown by the member's phone and rotates every ``WINDOW_S`` seconds::

    TP1.<card>.<window>.<mac>

- ``window`` = ``unix_time // WINDOW_S``;
- ``member_key`` = HMAC-SHA256(qr_secret, "tillpoints/member-key/v1|" + card), derived by
  HQ when the member installs the app, so a phone holds only its own key;
- ``mac`` = the first 80 bits of HMAC-SHA256(member_key, "TP1.<card>.<window>"), in
  RFC 4648 base32 without padding (16 characters).

Every character is in the QR alphanumeric set (ISO/IEC 18004, 45 characters) and is
typed the same on every keyboard layout we support, so the code is compact and
survives a keyboard wedge. A till holds the chain-wide ``qr_secret`` and checks a
code offline: it accepts the current window and one either side (clock skew), so a
screenshot stops working at most ``(SKEW_WINDOWS + 1) * WINDOW_S`` seconds after its
window ends. Codes are compared exactly: no case folding, no trimming.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from drivers.cards import CardClass, CardPolicy, classify
from drivers.scan import (
    EXPIRED_CODE,
    FOREIGN_CARD,
    INVALID_CODE,
    UNREADABLE,
    Scan,
    failure,
    member,
)

VERSION = "TP1"
WINDOW_S = 30
SKEW_WINDOWS = 1
_MAC_BYTES = 10
_KEY_LABEL = b"tillpoints/member-key/v1|"


def member_key(qr_secret: bytes, card: str) -> bytes:
    """The key a member's phone holds; it can sign codes for that card only."""
    return hmac.new(qr_secret, _KEY_LABEL + card.encode("ascii"), hashlib.sha256).digest()


def _mac(key: bytes, card: str, window: int) -> str:
    signed = f"{VERSION}.{card}.{window}".encode("ascii")
    digest = hmac.new(key, signed, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=")


def sign_code(key: bytes, card: str, now: float) -> tuple[str, int]:
    """What the phone does with its member key: the payload for ``now`` and the last
    unix second at which a till still accepts it."""
    window = int(now) // WINDOW_S
    payload = f"{VERSION}.{card}.{window}.{_mac(key, card, window)}"
    return payload, (window + SKEW_WINDOWS + 1) * WINDOW_S - 1


def make_dynamic_code(card: str, qr_secret: bytes, now: float) -> tuple[str, int]:
    """A dynamic member code for ``card`` at unix time ``now``: ``(payload, valid_until)``
    where ``valid_until`` is the last unix second at which a till accepts it."""
    if not (card.isascii() and card.isdigit()):
        raise ValueError("a member card number is ASCII digits")
    return sign_code(member_key(qr_secret, card), card, now)


def verify_dynamic_code(
    payload: str, qr_secret: bytes | None, now: float, policy: CardPolicy, at: float
) -> Scan:
    """Check a ``TP1.`` payload against the chain's secret at unix time ``now``. The
    signature is checked before the window, so an unsigned window is never trusted."""
    parts = payload.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        return failure(INVALID_CODE, at)
    _, card, window_text, mac = parts
    if not (card.isascii() and card.isdigit() and 0 < len(card) <= 20):
        return failure(INVALID_CODE, at)
    if not (window_text.isascii() and window_text.isdigit() and len(window_text) <= 12):
        return failure(INVALID_CODE, at)
    if qr_secret is None:
        return failure(INVALID_CODE, at, "no_secret")
    window = int(window_text)
    expected = _mac(member_key(qr_secret, card), card, window)
    if not hmac.compare_digest(expected.encode(), mac.encode("ascii", "replace")):
        return failure(INVALID_CODE, at, "bad_signature")
    if abs(int(now) // WINDOW_S - window) > SKEW_WINDOWS:
        return failure(EXPIRED_CODE, at)
    if classify(card, policy) is not CardClass.MEMBER:
        return failure(INVALID_CODE, at)
    return member(card, ("qr_dynamic",), at)


def strip_aim(text: str) -> str:
    """Drop an AIM symbology identifier (``]`` + letter + modifier), if present."""
    if len(text) >= 3 and text[0] == "]" and text[1].isascii() and text[1].isalpha():
        return text[3:]
    return text


def decode_code(
    text: str, policy: CardPolicy, qr_secret: bytes | None, now: float, at: float
) -> Scan:
    """Decode one line a scanner sent with no track sentinels. ``now`` is unix time
    (for dynamic codes), ``at`` the decoder's clock stamped on the scan."""
    if not all(" " <= char <= "~" for char in text):
        return failure(UNREADABLE, at, "noise")
    payload = strip_aim(text)
    if not payload:
        return failure(UNREADABLE, at, "garbled")
    if payload.startswith(VERSION + "."):
        return verify_dynamic_code(payload, qr_secret, now, policy, at)
    if not payload.isdigit():
        return failure(FOREIGN_CARD, at)
    card_class = classify(payload, policy)
    if card_class is CardClass.MEMBER:
        return member(payload, ("qr",), at)
    return failure(card_class.value, at)
