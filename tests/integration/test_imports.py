"""The imports queue writes the contacts it accepted to a file the CRM loads.

Against the real Redis server with the real ``config/queues.toml``: import jobs are
enqueued (so the payload limit applies) and run the way a worker runs them; what the
job did is read back from the file it wrote, in a temporary ``$HUEYARD_IMPORT_DIR``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import PayloadError
from framework.handlers import REGISTRY, HandlerRegistry, discover
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import imports

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    """The real config/queues.toml on the test database, installed as the process app."""
    discover(env={})  # every pipeline: the config's schedules name their handlers
    registry = HandlerRegistry()
    for spec in REGISTRY:
        if spec.module.startswith("pipelines."):
            registry.register(spec)
    text = (ROOT / "config" / "queues.toml").read_text(encoding="utf-8")
    app = Hueyard(parse_settings(text, env={"REDIS_URL": redis_url}), registry)
    set_app(app)
    yield app
    reset_app()
    app.close()


@pytest.fixture
def import_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "imports"
    monkeypatch.setenv(imports.IMPORT_DIR_ENV, str(directory))
    return directory


def run(app: Hueyard, payload: dict[str, Any]) -> JobInfo:
    """Enqueue ``payload`` and run the job as a worker would; its record after."""
    imports.import_contacts.enqueue(payload)
    huey = app.queue("imports").huey
    task = huey.dequeue()
    assert task is not None
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


def contacts(path: Path | str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def row(n: int) -> dict[str, str]:
    """A realistic row as a CRM's form or spreadsheet gives it."""
    return {
        "name": f"Customer number {n:05d} of Example Trading Ltd",
        "phone": f"+44 20 7946 {n:05d}",
        "email": f"customer.{n:05d}@example-trading.co.uk",
        "company": "Example Trading Ltd",
    }


# -- rows in the payload ----------------------------------------------------------------------


def test_an_import_writes_the_accepted_contacts_to_a_private_file(
    app: Hueyard, import_dir: Path
) -> None:
    # Given two good rows, one written with spaces and 00, and a bad one
    rows = [
        {"name": " Ada Lovelace ", "phone": "0044 20 7946 0958", "email": " ada@example.com "},
        {"name": "Grace", "phone": "+1 (415) 555-0199", "tags": "ignored"},
        {"name": "", "phone": "12345"},
    ]

    # When the import job runs
    done = run(app, {"importId": "imp-1", "rows": rows})

    # Then the result names the file, and the file holds exactly the imported contacts
    target = import_dir / "contacts-imp-1.jsonl"
    assert done.state == "completed"
    assert done.result == {
        "importId": "imp-1",
        "path": str(target),
        "total": 3,
        "imported": 2,
        "rejected": 1,
        "rejections": [{"index": 2, "reason": "name is missing"}],
    }
    assert contacts(target) == [
        {"name": "Ada Lovelace", "phone": "+442079460958", "email": "ada@example.com"},
        {"name": "Grace", "phone": "+14155550199", "email": None},
    ]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(import_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in import_dir.iterdir()) == [target.name]  # no temporary file


def test_a_second_run_of_the_same_import_overwrites_its_file(
    app: Hueyard, import_dir: Path
) -> None:
    run(app, {"importId": "imp-2", "rows": [row(1), row(2), row(3)]})

    done = run(app, {"importId": "imp-2", "rows": [row(4)]})

    assert done.result["imported"] == 1
    assert [c["phone"] for c in contacts(done.result["path"])] == ["+4420794600004"]


def test_the_largest_payload_import_fits_the_payload_limit(app: Hueyard, import_dir: Path) -> None:
    # Given the documented maximum of realistic rows (about 150 bytes each as JSON)
    rows = [row(n) for n in range(imports.MAX_ROWS)]

    # When it is enqueued and run, it is taken and every contact is written
    done = run(app, {"importId": "imp-max", "rows": rows})
    assert done.result["imported"] == imports.MAX_ROWS
    assert len(contacts(done.result["path"])) == imports.MAX_ROWS

    # And one row more is refused at enqueue, pointing at the file way
    with pytest.raises(PayloadError, match="rows: List should have at most 5000 items"):
        imports.import_contacts.enqueue({"importId": "imp-over", "rows": [*rows, row(0)]})


# -- an uploaded file -------------------------------------------------------------------------


def test_a_csv_upload_is_imported_with_rejections_by_line(app: Hueyard, import_dir: Path) -> None:
    # Given an uploaded CSV with a BOM, extra columns, a quoted field holding a line
    # break, a duplicate, a bad phone and a phone in fullwidth digits
    import_dir.mkdir(mode=0o700)
    (import_dir / "upload-7.csv").write_text(
        "\ufeffname,phone,email,address\n"
        'Ada,+44 20 7946 0958,ada@example.com,"1 Main St\nLondon"\n'
        "Grace,+1 415 555 0199,,\n"
        "Ada twin,0044 20 7946 0958,,\n"
        "Nobody,12345,,\n"
        "Wide,+1\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13,,\n",
        encoding="utf-8",
    )

    # When it is imported
    done = run(app, {"importId": "imp-7", "file": "upload-7.csv"})

    # Then the good rows are in the file, and the bad ones named by the line they start on
    assert done.state == "completed"
    assert (done.result["total"], done.result["imported"], done.result["rejected"]) == (5, 2, 3)
    assert done.result["rejections"] == [
        {"line": 5, "reason": "phone duplicates line 2"},
        {"line": 6, "reason": "phone is not an E.164 number ('+', country code, 7 to 15 digits)"},
        {"line": 7, "reason": "phone is not an E.164 number ('+', country code, 7 to 15 digits)"},
    ]
    assert contacts(done.result["path"]) == [
        {"name": "Ada", "phone": "+442079460958", "email": "ada@example.com"},
        {"name": "Grace", "phone": "+14155550199", "email": None},
    ]
    assert (import_dir / "upload-7.csv").exists()  # the upload is the CRM's to remove


def test_a_jsonl_upload_is_imported(app: Hueyard, import_dir: Path) -> None:
    import_dir.mkdir(mode=0o700)
    lines = [json.dumps(row(1)), "[1]", "", json.dumps({"name": "Bo", "phone": "+14155550100"})]
    (import_dir / "upload-8.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    done = run(app, {"importId": "imp-8", "file": "upload-8.jsonl"})

    assert (done.result["total"], done.result["imported"]) == (3, 2)
    assert done.result["rejections"] == [{"line": 2, "reason": "not a JSON object"}]
    assert [c["phone"] for c in contacts(done.result["path"])] == [
        "+4420794600001",
        "+14155550100",
    ]


def test_a_line_that_breaks_a_row_is_rejected_and_the_other_rows_imported(
    app: Hueyard, import_dir: Path
) -> None:
    # Given an upload with a line nested 30,000 deep (under the line limit), a name with
    # half an emoji (as a JavaScript truncation leaves it), a name that is a number, one
    # that reverses the text after it, and the same UK number with and without its "(0)"
    import_dir.mkdir(mode=0o700)
    lines = [
        json.dumps({"name": "Ada", "phone": "+44 (0)20 7946 0958"}),
        "[" * 30_000,
        '{"name": "Bob \\ud83d", "phone": "+14155550124"}',
        json.dumps({"name": 42, "phone": "+14155550125"}),
        json.dumps({"name": "Eve\u202egnp.exe", "phone": "+14155550126"}),
        json.dumps({"name": "Ada again", "phone": "+44 20 7946 0958"}),
        json.dumps({"name": "Cy", "phone": "+14155550127"}),
    ]
    (import_dir / "upload-11.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # When it is imported
    done = run(app, {"importId": "imp-11", "file": "upload-11.jsonl"})

    # Then each bad line is one rejection naming why (and the field), the rest imported
    assert done.state == "completed"
    assert (done.result["total"], done.result["imported"], done.result["rejected"]) == (7, 2, 5)
    assert done.result["rejections"] == [
        {"line": 2, "reason": "not a JSON object (nested too deep)"},
        {"line": 3, "reason": "name is not valid Unicode text (half of a surrogate pair)"},
        {"line": 4, "reason": "name must be text"},
        {
            "line": 5,
            "reason": "name holds a control character, a line break or a direction mark "
            "(character 4)",
        },
        {"line": 6, "reason": "phone duplicates line 1"},
    ]
    assert contacts(done.result["path"]) == [
        {"name": "Ada", "phone": "+442079460958", "email": None},
        {"name": "Cy", "phone": "+14155550127", "email": None},
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            "name,phone\rAda,+14155550123\rBob,+14155550124\r",
            "upload-9.csv, line 1: lines end in CR only (a classic Mac OS file); save the file "
            "with LF or CRLF line ends",
            id="cr-only",
        ),
        pytest.param(
            "name,phone\r" + "Ada,+14155550123\r" * 4000,
            "upload-9.csv, line 1: lines end in CR only",
            id="cr-only-past-the-line-limit",
        ),
        pytest.param(
            'name,phone\nAda,+14155550123\nBob,"+14155550124\nCy,+14155550125\n',
            "upload-9.csv, line 3: a '\"' opened on this line is never closed",
            id="unclosed-quote",
        ),
        pytest.param(
            'name,phone,note\nAda,+14155550123,"' + ("x" * 1000 + "\n") * 70 + '"\n',
            "upload-9.csv, line 2: a quoted field opened on this line is still open on line",
            id="quoted-field-over-the-row-limit",
        ),
        pytest.param(
            "name,phone\nJos\xe9,+14155550123\n".encode("latin-1"),
            "upload-9.csv, line 2: not UTF-8",
            id="latin-1",
        ),
        pytest.param(
            "id,mobile\n1,+14155550123\n",
            "the first line must be a header naming 'name' and 'phone'",
            id="no-header",
        ),
    ],
)
def test_a_bad_upload_fails_at_once_and_keeps_the_previous_contacts_file(
    app: Hueyard, import_dir: Path, content: str | bytes, message: str
) -> None:
    # Given an earlier run's contacts file
    first = run(app, {"importId": "imp-9", "rows": [row(1)]})
    before = Path(first.result["path"]).read_bytes()
    upload = import_dir / "upload-9.csv"
    if isinstance(content, str):
        upload.write_text(content, encoding="utf-8")
    else:
        upload.write_bytes(content)

    # When an upload that can not be read is imported under the same id
    done = run(app, {"importId": "imp-9", "file": "upload-9.csv"})

    # Then the job fails at once naming the file and the line, and the old file is whole
    assert done.state == "failed"
    assert done.attempts == 1
    assert message in (done.error or "")
    assert Path(first.result["path"]).read_bytes() == before
    assert sorted(p.name for p in import_dir.iterdir()) == ["contacts-imp-9.jsonl", upload.name]


def test_a_missing_upload_fails_naming_the_directory_variable(
    app: Hueyard, import_dir: Path
) -> None:
    done = run(app, {"importId": "imp-10", "file": "nope.csv"})

    assert done.state == "failed"
    assert f"import file {import_dir / 'nope.csv'} does not exist" in (done.error or "")
    assert imports.IMPORT_DIR_ENV in (done.error or "")
    assert not (import_dir / "contacts-imp-10.jsonl").exists()


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o703])
def test_an_existing_import_dir_open_to_others_is_refused(
    app: Hueyard, import_dir: Path, mode: int
) -> None:
    # Given an import directory that exists already, open to its group or to others
    import_dir.mkdir()
    import_dir.chmod(mode)
    (import_dir / "upload-12.csv").write_text("name,phone\nAda,+14155550123\n")

    # When an import runs, Then it fails at once naming the directory and the fix
    done = run(app, {"importId": "imp-12", "file": "upload-12.csv"})

    assert (done.state, done.attempts) == ("failed", 1)
    assert f"{import_dir} ($HUEYARD_IMPORT_DIR) has mode {mode:o}" in (done.error or "")
    assert f"chmod 700 {import_dir}" in (done.error or "")
    assert not (import_dir / "contacts-imp-12.jsonl").exists()


def test_an_existing_import_dir_of_another_user_is_refused(app: Hueyard, import_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    # Given an import directory another user made (and keeps private)
    import_dir.mkdir(mode=0o700)
    os.chown(import_dir, os.geteuid() + 1, -1)

    done = run(app, {"importId": "imp-13", "rows": [row(1)]})

    assert (done.state, done.attempts) == ("failed", 1)
    assert f"belongs to uid {os.geteuid() + 1}" in (done.error or "")
    assert not (import_dir / "contacts-imp-13.jsonl").exists()


def test_the_default_import_dir_is_under_the_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.delenv(imports.IMPORT_DIR_ENV, raising=False)
    assert imports.import_dir() == Path(tempfile.gettempdir()) / "hueyard-imports"
