"""Reading CSV/XLSX input files into rows of text, with header aliases (English and Chinese)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from quota.errors import Problem


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Unreadable(Exception):
    """The file cannot be read as rows: `code` and `facts` of the problem that says why."""

    def __init__(self, code: str, /, **facts):
        super().__init__(code)
        self.code, self.facts = code, facts


HEADER_SCAN = 20  # rows of a sheet searched for the header (title rows above it are skipped)


CHUNK = 5000  # CSV rows parsed at a time: a file of any size is read in pieces of this many rows
_CSV = dict(dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False)


UTF8_BOM = b"\xef\xbb\xbf"


def _csv_encoding(path: str) -> tuple[str, int]:
    """(encoding, bytes to skip): UTF-8 (a BOM allowed) or, for a file that is not UTF-8 but decodes cleanly as
    GB18030 (what Chinese Excel writes, a superset of GBK), GB18030 after a UTF-8 BOM if there is one (an editor
    that kept the BOM of a UTF-8 file saved as GBK: read as GB18030 it would eat the first header's first
    letter): found by decoding the file in pieces of 1 MB, never whole."""
    import codecs
    with open(path, "rb") as fh:
        bom = len(UTF8_BOM) if fh.read(len(UTF8_BOM)) == UTF8_BOM else 0
    line = 1  # the first line that is not UTF-8: where a file that mixes both encodings changes
    for encoding, skip in (("utf-8-sig", 0), ("gb18030", bom)):
        decoder, offset, lines, piece = codecs.getincrementaldecoder(encoding)(), skip, 0, b""
        try:
            with open(path, "rb") as fh:
                fh.seek(skip)
                for piece in iter(lambda: fh.read(1 << 20), b""):
                    decoder.decode(piece)
                    offset += len(piece)
                    lines += piece.count(b"\n")
                piece = b""
                decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            if encoding == "gb18030":
                raise _Unreadable("not_text", byte=offset + exc.start, line=line) from None
            line = lines + piece[:exc.start].count(b"\n") + 1
            continue
        return encoding, skip


def _csv(path: str, info: dict):
    """A CSV's header (an empty frame with its columns) and a function that yields its rows as frames of up to
    CHUNK rows of text cells, one row per physical line (blank lines kept, so row numbers are the file's lines).
    `info["encoding"]` says how it is read."""
    import pandas as pd
    encoding, skip = _csv_encoding(path)
    with open(path, "rb") as fh:
        fh.seek(skip)
        header = pd.read_csv(fh, encoding=encoding, nrows=0, **_CSV)
    info["encoding"] = "utf-8" if encoding == "utf-8-sig" else encoding

    def frames():
        with open(path, "rb") as fh:
            fh.seek(skip)
            with pd.read_csv(fh, encoding=encoding, chunksize=CHUNK, **_CSV) as reader:
                yield from reader
    return header, frames, 0


EXCEL_DIGITS = 15  # significant digits Excel shows and computes with


def cell_text(value) -> str:
    """A workbook cell as the text its user sees: a number cell by Excel's 15 significant digits, in plain
    digits (0.00001, not '1e-05'; =0.1+0.2 is 0.3, not 0.30000000000000004), other cells as str."""
    if value is None or isinstance(value, float) and value != value:
        return ""
    if isinstance(value, float):
        if value in (float("inf"), float("-inf")):
            return str(value)
        from decimal import Context
        d = Context(prec=EXCEL_DIGITS).create_decimal(repr(value)).normalize()
        return format(d, "f")
    return str(value)


def _known_columns(cells, aliases: dict[str, str]) -> int:
    return len({aliases.get(str(c).strip()) or aliases.get(str(c).strip().lower()) for c in cells} - {None})


MAX_UNPACKED_MB = 32  # a workbook unpacking to more is refused before it is parsed (minutes of CPU per 50 MB)


def _check_unpacked(path: str) -> None:
    """Refuse a workbook whose parts unpack to more than MAX_UNPACKED_MB, as their sizes in the zip directory say
    (a zip bomb: a small upload of identical rows that would keep a core parsing for hours). A size the directory
    understates only makes the read fail further on: zipfile stops at the size it was told."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as book:
            unpacked = sum(max(0, item.file_size) for item in book.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip at all: openpyxl says so in its own words
    if unpacked > MAX_UNPACKED_MB * 2**20:
        raise _Unreadable("workbook_too_big", size=round(unpacked / 2**20), max=MAX_UNPACKED_MB)


def _xlsx(path: str, aliases: dict[str, str], required: list[str], sheet: str | None, info: dict):
    """The sheet (`sheet`, or the first that has the columns) as text cells under its header row: the first of
    its first HEADER_SCAN rows that names most of the required columns. Returns (frame, rows above the header)."""
    import pandas as pd
    _check_unpacked(path)
    with pd.ExcelFile(path, engine="openpyxl") as book:
        names = [str(n) for n in book.sheet_names]
        if sheet and sheet not in names:
            raise _Unreadable("no_sheet", sheet=sheet, sheets=names)
        sheets = pd.read_excel(book, dtype=object, keep_default_na=False, sheet_name=sheet if sheet else None,
                               header=None)
    if sheet:
        sheets = {sheet: sheets}
    sheets = {k: v.map(cell_text) for k, v in sheets.items()}
    need = max(1, (len(required) + 1) // 2)
    for sheet_name, raw in sheets.items():
        for i in range(min(HEADER_SCAN, len(raw))):
            if _known_columns(raw.iloc[i].tolist(), aliases) >= need:
                frame = raw.iloc[i + 1:].reset_index(drop=True)
                frame.columns = [str(c) if str(c).strip() else f"Unnamed: {k}" for k, c in enumerate(raw.iloc[i])]
                info["sheet"], info["header_row"] = str(sheet_name), i + 1
                info["first_sheet"] = str(sheet_name) == str(next(iter(sheets)))
                return frame, lambda: iter([frame]), i
    raise _Unreadable("no_header_row", scan=HEADER_SCAN, sheets=[str(s) for s in sheets], required=list(required))


def read_rows(path: str, aliases: dict[str, str], required: list[str], optional: list[str],
              sheet: str | None = None, info: dict | None = None
              ) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    """Rows as (spreadsheet row number, {canonical column: stripped text}); problems as data.

    Header names are matched case-insensitively after trimming, and Chinese aliases map to
    the canonical English names. Cell values are always read as text (never as floats). Row numbers are the
    file's own: a CSV's physical line, a sheet's row (title rows above the header included). `info` receives
    how the file was read (`encoding` of a CSV, `sheet` of a workbook). Every row at once: open_rows streams.
    """
    problems, rows = open_rows(path, aliases, required, optional, sheet, info)
    if problems:
        return [], problems
    try:
        return list(rows()), []
    except Exception as exc:  # a file malformed further on: reported, never a crash
        return [], [unreadable(Path(path).name, exc)]


def _special(path: str) -> bool:
    """True if `path` exists and is neither a regular file nor a folder (a FIFO, a device, a socket)."""
    import os
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def unreadable(name: str, exc: BaseException) -> Problem:
    """The problem that says why a file cannot be read, from what reading it raised (opening it, or its rows)."""
    if isinstance(exc, FileNotFoundError):
        return Problem.of(name, 0, "", "file_not_found")
    if isinstance(exc, IsADirectoryError):
        return Problem.of(name, 0, "", "is_directory")
    if isinstance(exc, PermissionError):
        return Problem.of(name, 0, "", "no_permission")
    if isinstance(exc, _Unreadable):
        return Problem.of(name, 0, "", exc.code, **exc.facts)
    from pandas.errors import EmptyDataError
    return Problem.of(name, 0, "", "empty_file" if isinstance(exc, EmptyDataError) else "unreadable_file")


def open_rows(path: str, aliases: dict[str, str], required: list[str], optional: list[str],
              sheet: str | None = None, info: dict | None = None, columns: list | None = None):
    """(problems, rows): the file's and its header's problems, and a function that yields the rows as read_rows
    lists them, reading a CSV CHUNK rows at a time (a fresh pass over the file on each call; a file malformed
    further on raises while its rows are read: see `unreadable`). rows is None when there are problems.
    `columns` (a list) receives the columns read, in the file's order: (its header text, canonical name)."""
    info = {} if info is None else info
    name = Path(path).name
    suffix = Path(path).suffix.lower()
    if _special(path):  # a pipe (`<(cat f)`, /dev/stdin from a pipe) is empty on the second pass; named as given
        return [Problem.of(str(path), 0, "", "not_regular_file")], None  # (/dev/fd/63, not "63")
    try:
        if suffix in (".xlsx", ".xlsm"):
            frame, frames, above = _xlsx(path, aliases, required, sheet, info)
        elif suffix in (".csv", ".txt", ""):
            frame, frames, above = _csv(path, info)
        else:
            return [Problem.of(name, 0, "", "unsupported_file_type", suffix=suffix)], None
    except Exception as exc:  # malformed CSV/XLSX of any kind: report, do not crash
        return [unreadable(name, exc)], None
    problems: list[Problem] = []
    mapping: dict[str, str] = {}
    for col in frame.columns:
        key = str(col).strip().lstrip("\ufeff")
        canon = aliases.get(key) or aliases.get(key.lower())
        if canon is None:
            if key.lower().startswith("unnamed:") or not key:
                continue
            problems.append(Problem.of(name, 1 + above, key, "unknown_column"))
            continue
        if canon in mapping.values():
            problems.append(Problem.of(name, 1 + above, key, "duplicate_column", canon=canon))
            continue
        mapping[col] = canon
    for col in required:
        if col not in mapping.values():
            problems.append(Problem.of(name, 1 + above, col, "missing_column"))
    if problems:
        return problems, None
    positions = [(list(frame.columns).index(col), canon) for col, canon in mapping.items()]
    if columns is not None:
        columns.extend((str(col).strip().lstrip("\ufeff"), canon) for col, canon in mapping.items())

    def rows():
        i = 0
        for part in frames():
            for record in part.to_numpy(dtype=object).tolist():
                row = {canon: str(record[pos]).strip() for pos, canon in positions}
                for col in optional:
                    row.setdefault(col, "")
                i += 1
                if not any(row.values()):
                    continue  # blank line
                yield i + 1 + above, row
    return [], rows


PREVIEW_ROWS = 200  # rows a preview shows from the top of a file (rows with a problem are shown wherever they are)


def preview_rows(path: str, aliases: dict[str, str], required: list[str], optional: list[str],
                 sheet: str | None = None, marked=(), first: int = PREVIEW_ROWS) -> dict | None:
    """The rows of a file as open_rows reads them (the same reading an import makes), to show beside its
    problems: {"columns": [[header text, canonical name]], "rows": [{"row": the file's row number, "cells":
    [text per column]}], "total": data rows read, "first": `first`, "left_out": rows read but not returned}. Returns the first
    `first` rows and every row whose number is in `marked`; one pass, one row at a time. None when the file or
    its header cannot be read (its problems say why)."""
    columns: list = []
    problems, rows = open_rows(path, aliases, required, optional, sheet, columns=columns)
    if problems:
        return None
    marked, keys = set(marked), [canon for _, canon in columns]
    kept, total = [], 0
    try:
        for number, cells in rows():
            total += 1
            if total <= first or number in marked:
                kept.append({"row": number, "cells": [cells[k] for k in keys]})
    except Exception:  # noqa: BLE001 -- a file malformed further on: its problem says so
        return None
    return {"columns": [list(c) for c in columns], "rows": kept, "total": total, "first": first,
            "left_out": total - len(kept)}


def alias_map(pairs: dict[str, list[str]]) -> dict[str, str]:
    """{alias (lower-cased) -> canonical name} including each canonical name itself."""
    out = {}
    for canon, names in pairs.items():
        out[canon] = canon
        for n in names:
            out[n] = canon
            out[n.lower()] = canon
    return out
