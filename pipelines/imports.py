"""The ``imports`` queue: contact imports, one attempt, 10 minutes at most.

Each row needs a ``name`` and a ``phone``; an ``email``, when present and not
empty, must look like one. Phones are normalised before they are checked:
spaces, dots, dashes and parentheses are dropped and a leading ``00`` becomes
``+`` (``"+1 (415) 555-0123"`` -> ``"+14155550123"``). A phone already seen in
the same import is rejected as a duplicate. Other columns are ignored.

::

    from pipelines.imports import import_contacts

    import_contacts.enqueue({"importId": "imp-9", "rows": [
        {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"},
        {"name": "", "phone": "12345"},
    ]})
    # result: {"importId": "imp-9", "total": 2, "imported": 1, "rejected": 1,
    #          "rejections": [{"index": 1, "reason": "name is missing"}]}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from framework import handler
from pipelines._providers import EMAIL, Identifier, is_e164

__all__ = ["MAX_ROWS", "Contact", "ContactImport", "import_contacts", "validate_row"]

MAX_ROWS = 100_000
"""Rows of one import job; split larger files into several jobs."""
MAX_REASONS = 10
"""Rejections listed in the result (all are counted)."""
MAX_NAME = 200

_PHONE_NOISE = re.compile(r"[\s().-]")


class ContactImport(BaseModel):
    """One batch of contact rows, as parsed from a CSV or spreadsheet."""

    model_config = ConfigDict(extra="forbid")

    importId: Identifier
    rows: Annotated[list[dict[str, Any]], Field(max_length=MAX_ROWS)]


@dataclass(frozen=True)
class Contact:
    """A row that passed: name trimmed, phone in E.164."""

    name: str
    phone: str
    email: str | None = None


def normalise_phone(raw: str) -> str:
    """Drop spaces and punctuation; ``00`` becomes ``+``. The result is not yet checked."""
    phone = _PHONE_NOISE.sub("", raw)
    return "+" + phone[2:] if phone.startswith("00") else phone


def validate_row(row: Mapping[str, Any]) -> Contact:
    """The contact in ``row``; ``ValueError`` says what is wrong (never quoting the data)."""
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name is missing")
    if len(name.strip()) > MAX_NAME:
        raise ValueError(f"name is longer than {MAX_NAME} characters")
    raw_phone = row.get("phone")
    if raw_phone is None or raw_phone == "":
        raise ValueError("phone is missing")
    if not isinstance(raw_phone, str):
        raise ValueError("phone must be text starting with '+' and the country code")
    phone = normalise_phone(raw_phone)
    if not is_e164(phone):
        raise ValueError("phone is not an E.164 number ('+', country code, 7 to 15 digits)")
    email = row.get("email")
    if email is not None and email != "":
        if not isinstance(email, str) or not EMAIL.match(email.strip()):
            raise ValueError("email is not an email address")
        email = email.strip()
    return Contact(name=name.strip(), phone=phone, email=email or None)


@handler("imports")
def import_contacts(payload: ContactImport) -> dict[str, Any]:
    """Validate every row; return the counts and the first :data:`MAX_REASONS` rejections.

    ``{"importId", "total", "imported", "rejected", "rejections": [{"index", "reason"}]}``;
    ``index`` is the row's 0-based position in ``rows``.
    """
    seen: dict[str, int] = {}
    rejections: list[dict[str, Any]] = []
    rejected = 0
    for index, row in enumerate(payload.rows):
        try:
            contact = validate_row(row)
            first = seen.setdefault(contact.phone, index)
            if first != index:
                raise ValueError(f"phone duplicates row {first}")
        except ValueError as exc:
            rejected += 1
            if len(rejections) < MAX_REASONS:
                rejections.append({"index": index, "reason": str(exc)})
    return {
        "importId": payload.importId,
        "total": len(payload.rows),
        "imported": len(seen),
        "rejected": rejected,
        "rejections": rejections,
    }
