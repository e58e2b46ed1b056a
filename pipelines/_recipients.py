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
:data:`MAX_FILE_RECIPIENTS` rows and :data:`MAX_LINE_BYTES` bytes a line (a
CSV row, even one whose quoted field holds a line break). A row whose phone is
not E.164, or whose contact id is not an identifier, is a :class:`Rejection`
naming the line (never quoting the data); so is a JSONL line that is not an
object, one nested too deep to parse included; the campaign goes on. The
directory must be private (:func:`pipelines._files.check_private`). A file that is
missing, not UTF-8, too large, without a ``phone`` column, or not CSV (a ``"``
never closed, which would swallow every later row into one field) stops the
campaign with :class:`RecipientsFileError` naming the file and the line.

The reader is not tied to campaigns: :class:`DataFile` describes a kind of file
(its directory, its required columns, its limits) and :func:`read_rows` reads
one as :class:`Row` objects; the ``imports`` queue reads its files with it.
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
from typing import IO, Any

from pipelines._files import check_private
from pipelines._providers import IDENTIFIER, is_e164

__all__ = [
    "CAMPAIGN_DIR_ENV",
    "FILE_NAME",
    "MAX_CONTACT_ID",
    "MAX_FILE_RECIPIENTS",
    "MAX_LINE_BYTES",
    "RECIPIENTS_FILE",
    "DataFile",
    "Recipient",
    "RecipientsFileError",
    "Rejection",
    "Row",
    "campaign_dir",
    "inline_recipients",
    "read_recipients_file",
    "read_rows",
]

CAMPAIGN_DIR_ENV = "HUEYARD_CAMPAIGN_DIR"
MAX_FILE_RECIPIENTS = 1_000_000
"""Rows of one recipients file; split a larger audience into several campaigns."""
MAX_CONTACT_ID = 127
"""Characters of a contact id in a file (a CRM's ids; the message's job key is
``<campaignId>:<phone>``, :func:`pipelines.campaigns.message_key`)."""
MAX_LINE_BYTES = 4096
"""Bytes of one line of a recipients file (a row is a phone and an id, not a document)."""

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,122}\.(csv|jsonl)$")
"""A data file's name: no directory, ends in ``.csv`` or ``.jsonl``. Use ``fullmatch``."""


class RecipientsFileError(ValueError):
    """The data file can not be read as a whole; the message names it, the line and the fix."""


@dataclass(frozen=True, slots=True)
class DataFile:
    """A kind of file the CRM writes for a job to read: where, what it holds, how much."""

    what: str
    """What the file is called in errors: ``recipients file``."""
    variable: str
    """The environment variable naming its directory: ``HUEYARD_CAMPAIGN_DIR``."""
    default_dir: str
    """The directory under the system temp dir when the variable is not set."""
    columns: tuple[str, ...]
    """The columns a CSV header must name."""
    header_hint: str
    """How a good header looks, for the error that finds none."""
    max_rows: int
    max_line_bytes: int
    """Bytes of one line, and of one CSV row (a quoted field may hold line breaks)."""
    split: str
    """What to do about a file with more than ``max_rows`` rows."""
    again: str
    """What happens when the job runs again on the fixed file."""

    def directory(self) -> Path:
        """``$<variable>``, or ``<temp dir>/<default_dir>``."""
        configured = os.environ.get(self.variable, "").strip()
        return Path(configured) if configured else Path(tempfile.gettempdir()) / self.default_dir

    def resolve(self, name: str) -> Path:
        """The file ``name`` of the directory; :class:`RecipientsFileError` when it is not a
        plain file name, does not exist, or is a symbolic link leading out of it, and
        :class:`~pipelines._files.UnsafeDirectoryError` when the directory is not private
        (another user's, or open to group or others: they could plant or swap the file)."""
        if not FILE_NAME.fullmatch(name):  # the payload model checks it too; the last word
            raise RecipientsFileError(f"{self.what} {name!r} is not a file name")
        directory = self.directory()
        check_private(directory, self.variable)
        path = directory / name
        fix = f"write it there, or point ${self.variable} at the directory that holds it"
        if not path.is_file():
            raise RecipientsFileError(f"{self.what} {path} does not exist; {fix}")
        if path.resolve().parent != directory.resolve():
            raise RecipientsFileError(
                f"{self.what} {path} leads outside {directory} (a symbolic link); {fix}"
            )
        return path


RECIPIENTS_FILE = DataFile(
    what="recipients file",
    variable=CAMPAIGN_DIR_ENV,
    default_dir="hueyard-campaigns",
    columns=("phone",),
    header_hint="a 'phone' column (and, optionally, 'contactId'), e.g. 'contactId,phone'",
    max_rows=MAX_FILE_RECIPIENTS,
    max_line_bytes=MAX_LINE_BYTES,
    split="split the audience into several campaigns (the rows before were enqueued)",
    again="run the campaign again (recipients already enqueued are not messaged twice)",
)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One contact to message: the phone, and the CRM's contact id when the source has one."""

    phone: str
    contact_id: str | None = None

    @property
    def identity(self) -> str:
        """What makes a recipient unique within a campaign: the number messaged (rows of
        one number with other contact ids, or none, get one message; one contact id on
        two numbers gets one on each)."""
        return self.phone


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that names no valid recipient: its 1-based line in the file, and why."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a data file: the 1-based line it starts on, and its fields by column."""

    line: int
    fields: dict[str, Any]


def campaign_dir() -> Path:
    """``$HUEYARD_CAMPAIGN_DIR``, or ``<temp dir>/hueyard-campaigns``."""
    return RECIPIENTS_FILE.directory()


def inline_recipients(phones: Iterable[str]) -> Iterator[Recipient]:
    """The payload's ``recipients`` (validated at enqueue), identified by phone."""
    for phone in phones:
        yield Recipient(phone)


def read_recipients_file(name: str) -> Iterator[Recipient | Rejection]:
    """The rows of the campaign directory's file ``name``, one by one.

    Raises :class:`RecipientsFileError` when the file is missing, outside the
    directory, not UTF-8, longer than the limits, not CSV (a ``"`` never closed)
    or (CSV) has no ``phone`` column.
    """
    for row in read_rows(RECIPIENTS_FILE, name):
        if isinstance(row, Rejection):
            yield row
        else:
            yield _row(row.line, row.fields.get("phone"), row.fields.get("contactId"))


def read_rows(kind: DataFile, name: str) -> Iterator[Row | Rejection]:
    """The rows of ``kind``'s file ``name``, one by one: a CSV's rows by its header's
    columns, a JSONL file's objects (a line that is not one is a :class:`Rejection`).

    Raises :class:`RecipientsFileError` as :func:`read_recipients_file` says.
    """
    path = kind.resolve(name)
    with path.open("rb") as raw:
        csv_file = name.endswith(".csv")
        lines = _text_lines(raw, path, kind, header=csv_file)
        if csv_file:
            yield from _csv_rows(lines, path, kind)
        else:
            yield from _jsonl_rows(lines)


def _text_lines(
    raw: IO[bytes], path: Path, kind: DataFile, *, header: bool
) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line, decoded and bounded: at most
    ``kind.max_rows`` rows, after the first line when it is a ``header``."""
    number = 0
    while True:
        data = raw.readline(kind.max_line_bytes + 1)
        if not data:
            return
        number += 1
        if len(data) > kind.max_line_bytes and not data.endswith(b"\n"):
            if b"\r" in data:
                raise RecipientsFileError(f"{path}, line {number}: {_cr_only(kind)}")
            raise RecipientsFileError(
                f"{path}, line {number}: longer than {kind.max_line_bytes} bytes; a "
                f"{kind.what} holds one row per line"
            )
        if number > kind.max_rows + header:
            raise RecipientsFileError(f"{path} has more than {kind.max_rows:,} rows; {kind.split}")
        try:
            text = data.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise RecipientsFileError(
                f"{path}, line {number}: not UTF-8 (byte {exc.start + 1} of the line); save "
                f"the file as UTF-8 and {kind.again}"
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
        or not IDENTIFIER.fullmatch(contact_id)
        or len(contact_id) > MAX_CONTACT_ID
    ):
        return Rejection(
            line,
            f"contactId is not 1 to {MAX_CONTACT_ID} letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit",
        )
    return Recipient(phone.strip(), contact_id)


def _csv_rows(
    lines: Iterator[tuple[int, str]], path: Path, kind: DataFile
) -> Iterator[Row | Rejection]:
    record: list[int] = []  # the numbers of the lines the row being read spans
    size = 0

    def text() -> Iterator[str]:
        nonlocal size
        for number, line in lines:
            if record:  # a quoted field went on past the end of the line
                size += len(line.encode())
                if size > kind.max_line_bytes:
                    raise RecipientsFileError(
                        f"{path}, line {record[0]}: a quoted field opened on this line is "
                        f"still open on line {number}, past {kind.max_line_bytes} bytes: a "
                        "'\"' that is never closed swallows the rows after it. Close the "
                        f"quote, or write a '\"' inside a quoted field as '\"\"'; then {kind.again}"
                    )
            else:
                size = len(line.encode())
            record.append(number)
            yield line

    # strict: a '"' left open at the end of the file is an error, not a field that
    # silently ate the rows after it
    reader = csv.reader(text(), strict=True)

    def next_row() -> list[str] | None:
        record.clear()
        try:
            return next(reader, None)
        except csv.Error as exc:
            raise RecipientsFileError(_csv_error(path, record, exc, kind)) from None

    header = next_row()
    if header is None or not set(kind.columns) <= {column.strip() for column in header}:
        raise RecipientsFileError(
            f"{path}: the first line must be a header naming {kind.header_hint}"
        )
    columns = [column.strip() for column in header]
    while (row := next_row()) is not None:
        if not row:
            continue
        fields: dict[str, Any] = {}
        for column, value in zip(columns, row, strict=False):
            fields.setdefault(column, value)
        yield Row(record[0], fields)


def _cr_only(kind: DataFile) -> str:
    return (
        "lines end in CR only (a classic Mac OS file); save the file with LF or CRLF line "
        f"ends and {kind.again}"
    )


def _csv_error(path: Path, record: list[int], exc: csv.Error, kind: DataFile) -> str:
    fix = f"fix the file and {kind.again}"
    if not record:
        return f"{path}: not valid CSV ({exc}); {fix}"
    if str(exc).startswith("new-line character seen in unquoted field"):
        # the reader's own advice (universal-newline mode) is about Python, not the file:
        # a CR outside quotes, not followed by LF, is a line end the lines here do not see
        return f"{path}, line {record[0]}: {_cr_only(kind)}"
    if str(exc) == "unexpected end of data":
        return (
            f"{path}, line {record[0]}: a '\"' opened on this line is never closed (every "
            f"row after it would be one field); close it, or write a '\"' inside a quoted "
            f"field as '\"\"'; then {kind.again}"
        )
    if len(record) > 1:
        return (
            f"{path}, line {record[0]}: a quoted field opened on this line runs on to line "
            f"{record[-1]}, which is not valid CSV ({exc}): is a '\"' on line {record[0]} "
            f"never closed? {fix}"
        )
    return f"{path}, line {record[0]}: not valid CSV ({exc}); {fix}"


def _jsonl_rows(lines: Iterator[tuple[int, str]]) -> Iterator[Row | Rejection]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            yield Rejection(number, "not a JSON object")
            continue
        except RecursionError:
            # "[[[[..." within the line limit: Python's parser recurses once a level. One
            # line's rejection, never the whole job's failure (the serializer's limit,
            # MAX_DEPTH, is for values already parsed; a row is one flat object anyway)
            yield Rejection(number, "not a JSON object (nested too deep)")
            continue
        if not isinstance(row, dict):
            yield Rejection(number, "not a JSON object")
            continue
        yield Row(number, row)
