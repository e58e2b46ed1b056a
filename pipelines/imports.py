"""The ``imports`` queue: contact imports, one attempt, 10 minutes at most.

The contacts come in the payload (``rows``, at most :data:`MAX_ROWS`: a payload
is at most 1 MiB) or, for a large import, as a file the CRM uploaded into the
import directory (``file``: a ``.csv`` or ``.jsonl`` name in
``$HUEYARD_IMPORT_DIR``, default ``<system temp dir>/hueyard-imports``; read
line by line with the campaign recipients' reader, :mod:`pipelines._recipients`).

Each row needs a ``name`` and a ``phone``; an ``email``, when present and not
empty, must look like one. Phones are normalised before they are checked:
a trunk prefix ``(0)`` right after the country code is dropped (``"+44 (0)20 7946
0958"`` is ``"+442079460958"``, as dialled from abroad), then spaces, dots, dashes and
parentheses, and a leading ``00`` becomes ``+`` (``"+1 (415) 555-0123"`` ->
``"+14155550123"``). A phone already seen in the same import is rejected as a
duplicate. A name or email that is not text, or not valid Unicode (half of a
surrogate pair), or that holds a control character, a line break or a direction
mark, is rejected naming the field. Other columns are ignored.

The accepted contacts, normalised, are written to
``$HUEYARD_IMPORT_DIR/contacts-<importId>.jsonl`` for the CRM to load, one
``{"name", "phone", "email"}`` object a line (directory 0700, file 0600,
through a temporary file and ``os.replace``: a retry overwrites, a failed run
leaves the previous file whole). ``imported`` is the number of lines written.

::

    from pipelines.imports import import_contacts

    import_contacts.enqueue({"importId": "imp-9", "rows": [
        {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"},
        {"name": "", "phone": "12345"},
    ]})
    # result: {"importId": "imp-9", "path": "/tmp/hueyard-imports/contacts-imp-9.jsonl",
    #          "total": 2, "imported": 1, "rejected": 1,
    #          "rejections": [{"index": 1, "reason": "name is missing"}]}
    import_contacts.enqueue({"importId": "imp-10", "file": "upload-2025-11-05.csv"})
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, Self

from huey.exceptions import CancelExecution
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from framework import handler
from framework.textgrid import first_unsafe
from pipelines._files import output_dir, write_atomically
from pipelines._providers import EMAIL, Identifier, is_e164
from pipelines._recipients import FILE_NAME, DataFile, RecipientsFileError, Rejection, read_rows

__all__ = [
    "IMPORT_DIR_ENV",
    "IMPORT_FILE",
    "MAX_FILE_ROWS",
    "MAX_ROWS",
    "Contact",
    "ContactImport",
    "import_contacts",
    "import_dir",
    "output_name",
    "validate_row",
]

IMPORT_DIR_ENV = "HUEYARD_IMPORT_DIR"
MAX_ROWS = 5_000
"""Rows in one payload. A payload is at most 1 MiB: 5,000 rows of about 200 bytes fit;
a larger import comes as a ``file``."""
MAX_FILE_ROWS = 1_000_000
"""Rows of one import file; split a larger one into several imports."""
MAX_LINE_BYTES = 65_536
"""Bytes of one line (one CSV row) of an import file: a CRM's export has many columns."""
MAX_REASONS = 10
"""Rejections listed in the result (all are counted)."""
MAX_NAME = 200
OUTPUT_PREFIX = "contacts-"

IMPORT_FILE = DataFile(
    what="import file",
    variable=IMPORT_DIR_ENV,
    default_dir="hueyard-imports",
    columns=("name", "phone"),
    header_hint="'name' and 'phone' columns (and, optionally, 'email'), e.g. 'name,phone,email'",
    max_rows=MAX_FILE_ROWS,
    max_line_bytes=MAX_LINE_BYTES,
    split="split it into several imports",
    again="enqueue the import again (its contacts file is written anew)",
)

_PHONE_NOISE = re.compile(r"[\s().-]")
_TRUNK_ZERO = re.compile(r"^\s*(?:\+|00)\s*([1-9][0-9]{0,2})\s*\(\s*0\s*\)")
"""``+44 (0)20 ...``: the ``0`` dialled at home, written in parentheses after the country
code; dialled with the country code it is left out."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def import_dir() -> Path:
    """``$HUEYARD_IMPORT_DIR``, or ``<temp dir>/hueyard-imports``: where uploads are read
    and the contacts files are written."""
    return output_dir(IMPORT_DIR_ENV, IMPORT_FILE.default_dir)


def output_name(import_id: str) -> str:
    """The name of the file an import writes its contacts to: ``contacts-<importId>.jsonl``."""
    return f"{OUTPUT_PREFIX}{import_id}.jsonl"


def _file_name(value: str) -> str:
    if not FILE_NAME.fullmatch(value):
        raise ValueError(
            "must be the name of a .csv or .jsonl file in the import directory "
            f"(${IMPORT_DIR_ENV}), without a directory: 1 to 128 letters, digits, "
            "'_', '.' or '-', e.g. 'upload-42.csv'"
        )
    return value


class ContactImport(BaseModel):
    """One batch of contact rows, as parsed from a CSV or spreadsheet, or the name of an
    uploaded file holding them."""

    model_config = ConfigDict(extra="forbid")

    importId: Identifier
    rows: Annotated[list[dict[str, Any]], Field(max_length=MAX_ROWS)] | None = None
    file: Annotated[str, AfterValidator(_file_name)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.rows is None) == (self.file is None):
            raise ValueError(
                f"give either rows (a list of at most {MAX_ROWS:,} objects) or file (a .csv "
                f"or .jsonl file in ${IMPORT_DIR_ENV}), not both and not neither"
            )
        if self.file == output_name(self.importId):
            raise ValueError(
                f"file {self.file!r} is where this import writes its contacts; upload the "
                "file under another name"
            )
        return self


@dataclass(frozen=True)
class Contact:
    """A row that passed: name trimmed, phone in E.164."""

    name: str
    phone: str
    email: str | None = None


def normalise_phone(raw: str) -> str:
    """Drop a trunk ``(0)`` after the country code, then spaces and punctuation; ``00``
    becomes ``+``. The result is not yet checked::

        normalise_phone("+44 (0)20 7946 0958")  # "+442079460958"
    """
    phone = _PHONE_NOISE.sub("", _TRUNK_ZERO.sub(r"+\1", raw, count=1))
    return "+" + phone[2:] if phone.startswith("00") else phone


def _text(row: Mapping[str, Any], field: str) -> str | None:
    """``row[field]`` stripped, None when missing or empty; ``ValueError`` naming the field
    when it is not text, not valid Unicode, or holds what would break a line or a screen
    wherever the contact is shown (a control character, a line break, a direction mark)."""
    value = row.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text")
    if _SURROGATE.search(value):  # "\ud83d": half an emoji, which no UTF-8 file can hold
        raise ValueError(f"{field} is not valid Unicode text (half of a surrogate pair)")
    value = value.strip()
    position = first_unsafe(value)
    if position is not None:
        raise ValueError(
            f"{field} holds a control character, a line break or a direction mark "
            f"(character {position + 1})"
        )
    return value or None


def validate_row(row: Mapping[str, Any]) -> Contact:
    """The contact in ``row``; ``ValueError`` says what is wrong (never quoting the data)."""
    name = _text(row, "name")
    if name is None:
        raise ValueError("name is missing")
    if len(name) > MAX_NAME:
        raise ValueError(f"name is longer than {MAX_NAME} characters")
    raw_phone = row.get("phone")
    if raw_phone is None or raw_phone == "":
        raise ValueError("phone is missing")
    if not isinstance(raw_phone, str):
        raise ValueError("phone must be text starting with '+' and the country code")
    phone = normalise_phone(raw_phone)
    if not is_e164(phone):
        raise ValueError("phone is not an E.164 number ('+', country code, 7 to 15 digits)")
    email = _text(row, "email")
    if email is not None and not EMAIL.fullmatch(email):
        raise ValueError("email is not an email address")
    return Contact(name=name, phone=phone, email=email)


@handler("imports")
def import_contacts(payload: ContactImport) -> dict[str, Any]:
    """Validate every row; write the accepted contacts to ``contacts-<importId>.jsonl``.

    Returns ``{"importId", "path", "total", "imported", "rejected", "rejections"}``:
    ``imported`` contacts written to ``path``, the first :data:`MAX_REASONS`
    rejections as ``{"index", "reason"}`` (``index``: the row's 0-based position in
    ``rows``) or, for a ``file``, ``{"line", "reason"}`` (1-based). A file that can
    not be read (missing, not UTF-8, not CSV...) fails the job at once, naming the
    file and the line; the previous contacts file, if any, is left as it was.
    """
    directory = import_dir()
    name = output_name(payload.importId)
    try:
        counts = write_atomically(
            directory, name, lambda file: _write_contacts(file, payload), variable=IMPORT_DIR_ENV
        )
    except RecipientsFileError as exc:
        # The file is what it is: a retry would read the same bytes. Fail now, say why.
        raise CancelExecution(str(exc), retry=False) from None
    return {"importId": payload.importId, "path": str(directory / name), **counts}


def _entries(payload: ContactImport) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """``(position, row)`` for each row, or ``(position, reason)`` for a line of the file
    that is no row at all."""
    if payload.rows is not None:
        yield from enumerate(payload.rows)
        return
    assert payload.file is not None  # the model wants one source
    for row in read_rows(IMPORT_FILE, payload.file):
        if isinstance(row, Rejection):
            yield row.line, row.reason
        else:
            yield row.line, row.fields


def _write_contacts(file: IO[str], payload: ContactImport) -> dict[str, Any]:
    where, noun = ("index", "row") if payload.rows is not None else ("line", "line")
    seen: dict[str, int] = {}
    rejections: list[dict[str, Any]] = []
    total = rejected = 0
    for position, row in _entries(payload):
        total += 1
        try:
            if isinstance(row, str):
                raise ValueError(row)
            contact = validate_row(row)
            first = seen.setdefault(contact.phone, position)
            if first != position:
                raise ValueError(f"phone duplicates {noun} {first}")
        except ValueError as exc:
            rejected += 1
            if len(rejections) < MAX_REASONS:
                rejections.append({where: position, "reason": str(exc)})
            continue
        record = {"name": contact.name, "phone": contact.phone, "email": contact.email}
        file.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {
        "total": total,
        "imported": len(seen),
        "rejected": rejected,
        "rejections": rejections,
    }
