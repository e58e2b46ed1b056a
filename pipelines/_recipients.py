"""Where a campaign's recipients come from: the payload's list, or a file the CRM wrote.

A payload is at most 1 MiB, so a large audience (a segment of 100,000
contacts) comes as a file in the campaign directory, ``$HUEYARD_CAMPAIGN_DIR``
(default ``<system temp dir>/hueyard-campaigns``). The payload names the file,
never a path: ``segment-42.csv`` or ``segment-42.jsonl``.

- ``.csv``: a header row with a ``phone`` column and, optionally, a
  ``contactId`` column; other columns are ignored. A UTF-8 BOM is allowed.
- ``.jsonl``: one JSON object per line, ``{"phone": "+14155550123",
  "contactId": "c-42"}``; blank lines are skipped.

The file is read line by line (memory stays bounded by one batch), at most
:data:`MAX_FILE_RECIPIENTS` rows and :data:`MAX_LINE_BYTES` bytes a line. A row
whose phone is not E.164, or whose contact id is not an identifier, is a
:class:`Rejection` naming the line (never quoting the data); the campaign
goes on. A file that is missing, not UTF-8, too large or without a ``phone``
column stops the campaign with :class:`RecipientsFileError`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines._providers import IDENTIFIER, is_e164

__all__ = [
    "CAMPAIGN_DIR_ENV",
    "FILE_NAME",
    "MAX_CONTACT_ID",
    "MAX_FILE_RECIPIENTS",
    "MAX_LINE_BYTES",
    "Recipient",
    "RecipientsFileError",
    "Rejection",
    "campaign_dir",
    "inline_recipients",
    "read_recipients_file",
]

CAMPAIGN_DIR_ENV = "HUEYARD_CAMPAIGN_DIR"
MAX_FILE_RECIPIENTS = 1_000_000
"""Rows of one recipients file; split a larger audience into several campaigns."""
MAX_CONTACT_ID = 127
"""Characters of a contact id in a file: ``<campaignId>:<contactId>`` fits a job key (256)."""
MAX_CONTACT_ID = 127
"""Characters of a contact id in a file: ``<campaignId>:<contactId>`` fits a job key (256)."""
MAX_LINE_BYTES = 4096
"""Bytes of one line of a recipients file (a row is a phone and an id, not a document)."""

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,122}\.(csv|jsonl)$")
"""A recipients file's name: no directory, ends in ``.csv`` or ``.jsonl``."""


class RecipientsFileError(ValueError):
    """The recipients file can not be read as a whole; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One contact to message: the phone, and the CRM's contact id when the source has one."""

    phone: str
    contact_id: str | None = None

    @property
    def identity(self) -> str:
        """What makes the contact unique within a campaign: its contact id, else its phone."""
        return self.contact_id or self.phone


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that names no valid recipient: its 1-based line in the file, and why."""

    line: int
    reason: str


def campaign_dir() -> Path:
    """``$HUEYARD_CAMPAIGN_DIR``, or ``<temp dir>/hueyard-campaigns``."""
    configured = os.environ.get(CAMPAIGN_DIR_ENV, "").strip()
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "hueyard-campaigns"


def inline_recipients(phones: Iterable[str]) -> Iterator[Recipient]:
    """The payload's ``recipients`` (validated at enqueue), identified by phone."""
    for phone in phones:
        yield Recipient(phone)


def read_recipients_file(name: str) -> Iterator[Recipient | Rejection]:
    """The rows of the campaign directory's file ``name``, one by one.

    Raises :class:`RecipientsFileError` when the file is missing, outside the
    directory, not UTF-8, longer than the limits, or (CSV) has no ``phone`` column.
    """
    path = _resolve(name)
    with path.open("rb") as raw:
        lines = _text_lines(raw, path)
        if name.endswith(".csv"):
            yield from _csv_rows(lines, path)
        else:
            yield from _jsonl_rows(lines)


def _resolve(name: str) -> Path:
    if not FILE_NAME.match(name):  # the payload model checks it too; this is the last word
        raise RecipientsFileError(f"recipients_file={name!r} is not a file name")
    directory = campaign_dir()
    path = directory / name
    fix = f"write it there, or point ${CAMPAIGN_DIR_ENV} at the directory that holds it"
    if not path.is_file():
        raise RecipientsFileError(f"recipients file {path} does not exist; {fix}")
    if path.resolve().parent != directory.resolve():
        raise RecipientsFileError(
            f"recipients file {path} leads outside {directory} (a symbolic link); {fix}"
        )
    return path


def _text_lines(raw: Any, path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line, decoded and bounded."""
    number = 0
    while True:
        data: bytes = raw.readline(MAX_LINE_BYTES + 1)
        if not data:
            return
        number += 1
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
            raise RecipientsFileError(
                f"{path}, line {number}: longer than {MAX_LINE_BYTES} bytes; a recipients "
                "file holds one recipient per line"
            )
        if number > MAX_FILE_RECIPIENTS + 1:  # + 1: a CSV's header
            raise RecipientsFileError(
                f"{path} has more than {MAX_FILE_RECIPIENTS:,} rows; split the audience "
                "into several campaigns (the rows before were enqueued)"
            )
        try:
            text = data.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise RecipientsFileError(
                f"{path}, line {number}: not UTF-8 (byte {exc.start + 1} of the line); save "
                "the file as UTF-8 and run the campaign again (recipients already enqueued "
                "are not messaged twice)"
            ) from None
        yield number, text


def _row(line: int, phone: Any, contact_id: Any) -> Recipient | Rejection:
    if not isinstance(phone, str) or not is_e164(phone.strip()):
        return Rejection(line, "phone is missing or not E.164 ('+', country code, 7 to 15 digits)")
    contact_id = contact_id.strip() if isinstance(contact_id, str) else contact_id
    if contact_id is None or contact_id == "":
        return Recipient(phone.strip())
    if (
        not isinstance(contact_id, str)
        or not IDENTIFIER.match(contact_id)
        or len(contact_id) > MAX_CONTACT_ID
    ):
        return Rejection(
            line,
            f"contactId is not 1 to {MAX_CONTACT_ID} letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit",
        )
    return Recipient(phone.strip(), contact_id)


def _csv_rows(lines: Iterator[tuple[int, str]], path: Path) -> Iterator[Recipient | Rejection]:
    numbers: list[int] = []

    def text() -> Iterator[str]:
        for number, line in lines:
            numbers.append(number)
            yield line

    reader = csv.reader(text())
    header = next(reader, None)
    if header is None or "phone" not in [column.strip() for column in header]:
        raise RecipientsFileError(
            f"{path}: the first line must be a header naming a 'phone' column (and, "
            "optionally, 'contactId'), e.g. 'contactId,phone'"
        )
    columns = [column.strip() for column in header]
    phone_at = columns.index("phone")
    id_at = columns.index("contactId") if "contactId" in columns else None
    for row in reader:
        line = numbers[-1]
        del numbers[:-1]
        if not row:
            continue
        phone = row[phone_at] if phone_at < len(row) else None
        contact_id = row[id_at] if id_at is not None and id_at < len(row) else None
        yield _row(line, phone, contact_id)


def _jsonl_rows(lines: Iterator[tuple[int, str]]) -> Iterator[Recipient | Rejection]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            yield Rejection(number, "not a JSON object")
            continue
        if not isinstance(row, dict):
            yield Rejection(number, "not a JSON object")
            continue
        yield _row(number, row.get("phone"), row.get("contactId"))
