"""A QR code as terminal text: two modules per character cell with the Unicode
half blocks, so a 21x21 code fits in 15 rows of an 80x24 screen.

ISO/IEC 18004 asks for a quiet zone of four light modules around the symbol; it
is part of the text, and the widget that shows it paints dark-on-light whatever
the theme, since phone cameras read dark modules on a light field.
"""

from __future__ import annotations

import segno

QUIET_ZONE = 4
_CELLS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}


def qr_text(payload: str, quiet_zone: int = QUIET_ZONE) -> str:
    """The QR code of ``payload`` (error correction M) as lines of half blocks,
    dark modules drawn in the foreground colour."""
    code = segno.make(payload, error="m", micro=False, boost_error=False)
    size = len(code.matrix)
    width = size + 2 * quiet_zone

    def dark(row: int, column: int) -> bool:
        row, column = row - quiet_zone, column - quiet_zone
        return 0 <= row < size and 0 <= column < size and bool(code.matrix[row][column])

    lines = []
    for top in range(0, width, 2):
        lines.append(
            "".join(_CELLS[dark(top, column), dark(top + 1, column)] for column in range(width))
        )
    return "\n".join(lines)


def modules(text: str) -> list[list[bool]]:
    """The module grid back from ``qr_text`` (for tests: decode what is on screen)."""
    grid: list[list[bool]] = []
    for line in text.split("\n"):
        grid.append([char in "█▀" for char in line])
        grid.append([char in "█▄" for char in line])
    return grid
