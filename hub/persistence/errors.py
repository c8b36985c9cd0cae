"""Domain errors of the store. Every edge (REST, MQTT bridge requests, CLI) turns them into clear messages.

``code`` is stable and machine-readable; REST maps it to an HTTP status (see :data:`HTTP_STATUS`).
"""

from __future__ import annotations

from typing import Any, Final


class StoreError(Exception):
    """A request the store refused or could not carry out; ``str(error)`` is the message for the user."""

    code = "store_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"error": str(self), "code": self.code, "details": self.details}


class NotFoundError(StoreError):
    """The thing named does not exist."""

    code = "not_found"


class ConflictError(StoreError):
    """The change contradicts what is stored (a duplicate, or something still in use)."""

    code = "conflict"


class InvalidInputError(StoreError):
    """A value is malformed or out of range; nothing was changed."""

    code = "invalid"


HTTP_STATUS: Final = {NotFoundError.code: 404, ConflictError.code: 409, InvalidInputError.code: 422}
