"""What to enroll: a manifest (CSV or JSON Lines) or files and folders, turned into checked ``EnrollItem``s.

Every problem that would make a row's meaning uncertain (a missing column, a bad date, one subject id given
two names, a URL) stops the whole run before anything is stored, with an error naming the row and field.
Problems with the image itself (missing, unreadable, no face, ...) only reject that row, with the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facetrail.errors import BadInputError

REQUIRED_COLUMNS = ("path", "subject_id")
OPTIONAL_COLUMNS = ("name", "source_record_id", "capture_date", "notes")
MAX_LENGTHS = {
    "subject_id": 200,
    "name": 300,
    "source_record_id": 200,
    "notes": 10_000,
    "path": 4096,
    "capture_date": 10,
}
DEFAULT_MAX_ROWS = 1_000_000
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

SubjectFrom = Literal["auto", "parent", "stem"]


class ManifestError(BadInputError):
    code = "bad_manifest"


class UrlRefusedError(BadInputError):
    code = "url_refused"


@dataclass(frozen=True)
class EnrollItem:
    path: Path
    subject_id: str
    name: str | None = None
    source_record_id: str | None = None
    capture_date: dt.date | None = None
    notes: str = ""
    row: int | None = None  # line number in the manifest (the header is line 1 in a CSV)


def looks_like_url(value: str) -> bool:
    return bool(_URL.match(value.strip()))


def refuse_url(value: str, where: str) -> None:
    if looks_like_url(value):
        raise UrlRefusedError(
            f"{where}: {value!r} is a URL; FaceTrail never downloads or ingests URLs, only local files you "
            "hold lawfully (copy them to disk first, under your own process)",
            path=value,
        )


# ---------------------------------------------------------------- files and folders


def items_from_paths(paths: Iterable[str | Path], subject_from: SubjectFrom = "auto") -> list[EnrollItem]:
    """Files as given, folders walked recursively (hidden files and folders skipped), in sorted order.

    Subject external id: ``parent`` = the file's folder name, ``stem`` = its name without extension,
    ``auto`` = the folder name for files found in a sub-folder of a given folder, else the file stem.
    """
    items: list[EnrollItem] = []
    for raw in paths:
        refuse_url(str(raw), "path")
        root = Path(raw)
        if root.is_dir():
            for file in _walk(root):
                in_subfolder = file.parent != root
                use_parent = subject_from == "parent" or (subject_from == "auto" and in_subfolder)
                items.append(EnrollItem(file, file.parent.name if use_parent else file.stem))
        elif root.exists():
            items.append(EnrollItem(root, root.parent.resolve().name if subject_from == "parent" else root.stem))
        else:
            raise BadInputError(f"no such file or folder: {root}", path=str(root))
    if not items:
        raise BadInputError("no files found in the given paths (hidden files and folders are skipped)")
    for item in items:
        if not item.subject_id:
            raise BadInputError(f"cannot derive a subject id from {item.path}", path=str(item.path))
    return items


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


# ---------------------------------------------------------------- manifests


def read_manifest(path: Path, max_rows: int = DEFAULT_MAX_ROWS) -> list[EnrollItem]:
    """Parse and check a .csv or .jsonl manifest; paths are relative to the manifest's folder."""
    refuse_url(str(path), "manifest")
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path, max_rows)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(path, max_rows)
    else:
        raise ManifestError(f"manifest must be .csv or .jsonl, got {path.name!r}", path=str(path))
    items = [_item(line, row, path.parent) for line, row in rows]
    if not items:
        raise ManifestError(f"manifest {path.name} has no rows", path=str(path))
    check_names_agree(items)
    return items


def _check_columns(columns: Iterable[str], where: str) -> None:
    present = set(columns)
    for column in REQUIRED_COLUMNS:
        if column not in present:
            raise ManifestError(f"{where}: required column {column!r} is missing", column=column)
    unknown = sorted(present - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    if unknown:  # refused rather than ignored: a misspelt column would silently lose provenance
        raise ManifestError(
            f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}",
            columns=unknown,
        )


def _too_many(max_rows: int) -> ManifestError:
    return ManifestError(
        f"manifest has more than {max_rows:,} rows (the limit; raise it with --max-rows)", limit=max_rows
    )


def _csv_rows(path: Path, max_rows: int) -> Iterator[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise ManifestError(f"manifest {path.name} is empty", path=str(path))
        _check_columns([c.strip() for c in reader.fieldnames], f"{path.name} header")
        for count, record in enumerate(reader, start=1):
            line = reader.line_num
            if None in record:
                raise ManifestError(f"{path.name} line {line}: more fields than columns", row=line)
            if count > max_rows:
                raise _too_many(max_rows)
            yield line, {k.strip(): (v or "") for k, v in record.items()}


def _jsonl_rows(path: Path, max_rows: int) -> Iterator[tuple[int, dict[str, str]]]:
    count = 0
    with open(path, encoding="utf-8-sig") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path.name} line {line}: not valid JSON ({exc.msg})", row=line) from None
            if not isinstance(record, dict):
                raise ManifestError(f"{path.name} line {line}: expected a JSON object", row=line)
            _check_columns(record, f"{path.name} line {line}")
            count += 1
            if count > max_rows:
                raise _too_many(max_rows)
            values: dict[str, str] = {}
            for key, value in record.items():
                if value is not None and not isinstance(value, str | int):
                    raise ManifestError(f"{path.name} line {line}: field {key!r} must be text", row=line, field=key)
                values[key] = "" if value is None else str(value)
            yield line, values


def _item(line: int, row: dict[str, str], base: Path) -> EnrollItem:
    def field(name: str) -> str:
        value = row.get(name, "").strip()
        if len(value) > MAX_LENGTHS[name] and name != "capture_date":  # a bad date gets its own message
            raise ManifestError(
                f"line {line}: {name} is {len(value)} characters, over the limit of {MAX_LENGTHS[name]}",
                row=line,
                field=name,
            )
        return value

    raw_path = field("path")
    if not raw_path:
        raise ManifestError(f"line {line}: path is empty", row=line, field="path")
    refuse_url(raw_path, f"line {line}")
    subject_id = field("subject_id")
    if not subject_id:
        raise ManifestError(f"line {line}: subject_id is empty", row=line, field="subject_id")
    return EnrollItem(
        path=base / raw_path,
        subject_id=subject_id,
        name=field("name") or None,
        source_record_id=field("source_record_id") or None,
        capture_date=_date(field("capture_date"), line),
        notes=field("notes"),
        row=line,
    )


def _date(value: str, line: int) -> dt.date | None:
    if not value:
        return None
    try:
        if not _DATE.match(value):
            raise ValueError
        date = dt.date.fromisoformat(value)
    except ValueError:
        raise ManifestError(
            f"line {line}: capture_date {value!r} is not a date in YYYY-MM-DD form", row=line, field="capture_date"
        ) from None
    if date > dt.datetime.now(dt.UTC).date():
        raise ManifestError(f"line {line}: capture_date {value} is in the future", row=line, field="capture_date")
    return date


def check_names_agree(items: Iterable[EnrollItem], known: dict[str, str | None] | None = None) -> None:
    """One subject id, one name: rows (or a stored subject) that name the same id differently are an error."""
    first_name: dict[str, tuple[str, int | None]] = {}
    conflicts: list[str] = []
    for item in items:
        if item.name is None:
            continue
        stored = (known or {}).get(item.subject_id)
        if stored and stored != item.name:
            conflicts.append(
                f"subject {item.subject_id!r}: line {item.row} names {item.name!r} but the gallery "
                f"already has it as {stored!r}"
            )
            continue
        seen = first_name.setdefault(item.subject_id, (item.name, item.row))
        if seen[0] != item.name:
            conflicts.append(
                f"subject {item.subject_id!r}: line {seen[1]} names {seen[0]!r}, line {item.row} names {item.name!r}"
            )
    if conflicts:
        shown = "; ".join(conflicts[:10]) + (f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else "")
        raise ManifestError(
            f"conflicting names for the same subject id, nothing was enrolled: {shown}", conflicts=conflicts
        )
