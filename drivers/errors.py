"""The drivers' exception root, carrying a stable error code (docs/contract.md)."""

from __future__ import annotations


class DriverError(Exception):
    """A reader or decoder failure. ``exit_status`` follows docs/contract.md: 2 for input
    that is wrong (an unknown device, a bad capture file), 1 for I/O failures."""

    def __init__(self, code: str, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_status = exit_status

    def as_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}
