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


HEADER_SCAN = 20  # rows of a sheet searched for the header (title rows above it are skipped)


def _csv(path: str, info: dict):
    """A CSV as text cells, one row per physical line (blank lines kept, so row numbers are the file's lines).
    UTF-8 first; a file that is not UTF-8 but decodes cleanly as GB18030 (what Chinese Excel writes, a superset of
    GBK) is read as such, and `info["encoding"]` says so."""
    import pandas as pd
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, skipinitialspace=True,
                                skip_blank_lines=False)
        except UnicodeDecodeError as exc:
            if encoding == "gb18030":
                raise ValueError(f"neither UTF-8 nor GB18030/GBK text ({exc.reason} at byte {exc.start}); save it "
                                 "as CSV UTF-8") from None
            continue
        info["encoding"] = "utf-8" if encoding == "utf-8-sig" else encoding
        return frame, 0


def _known_columns(cells, aliases: dict[str, str]) -> int:
    return len({aliases.get(str(c).strip()) or aliases.get(str(c).strip().lower()) for c in cells} - {None})


def _xlsx(path: str, aliases: dict[str, str], required: list[str], sheet: str | None, info: dict):
    """The sheet (`sheet`, or the first that has the columns) as text cells under its header row: the first of
    its first HEADER_SCAN rows that names most of the required columns. Returns (frame, rows above the header)."""
    import pandas as pd
    sheets = pd.read_excel(path, dtype=str, keep_default_na=False, sheet_name=sheet if sheet else None,
                           header=None, engine="openpyxl")
    if sheet:
        sheets = {sheet: sheets}
    need = max(1, (len(required) + 1) // 2)
    for sheet_name, raw in sheets.items():
        for i in range(min(HEADER_SCAN, len(raw))):
            if _known_columns(raw.iloc[i].tolist(), aliases) >= need:
                frame = raw.iloc[i + 1:].reset_index(drop=True)
                frame.columns = [str(c) if str(c).strip() else f"Unnamed: {k}" for k, c in enumerate(raw.iloc[i])]
                info["sheet"] = str(sheet_name)
                return frame, i
    names = ", ".join(repr(str(s)) for s in sheets)
    raise ValueError(f"no sheet has a header row naming the required columns in its first {HEADER_SCAN} rows "
                     f"(sheets: {names}; required: {', '.join(required)})")


def read_rows(path: str, aliases: dict[str, str], required: list[str], optional: list[str],
              sheet: str | None = None, info: dict | None = None
              ) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    """Rows as (spreadsheet row number, {canonical column: stripped text}); problems as data.

    Header names are matched case-insensitively after trimming, and Chinese aliases map to
    the canonical English names. Cell values are always read as text (never as floats). Row numbers are the
    file's own: a CSV's physical line, a sheet's row (title rows above the header included). `info` receives
    how the file was read (`encoding` of a CSV, `sheet` of a workbook).
    """
    info = {} if info is None else info
    name = Path(path).name
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            frame, above = _xlsx(path, aliases, required, sheet, info)
        elif suffix in (".csv", ".txt", ""):
            frame, above = _csv(path, info)
        else:
            return [], [Problem(name, 0, "", f"unsupported file type {suffix!r} (use .csv or .xlsx)")]
    except FileNotFoundError:
        return [], [Problem(name, 0, "", "file not found")]
    except IsADirectoryError:
        return [], [Problem(name, 0, "", "is a directory, not a file")]
    except ValueError as exc:
        message = str(exc)
        if "Worksheet named" in message or "not found" in message and sheet:
            message = f"no sheet named {sheet!r}"
        return [], [Problem(name, 0, "", message)]
    except Exception as exc:  # malformed CSV/XLSX of any kind: report, do not crash
        kind = "empty file" if type(exc).__name__ == "EmptyDataError" else "not a readable CSV or XLSX file"
        return [], [Problem(name, 0, "", f"cannot read file: {kind}")]
    problems: list[Problem] = []
    mapping: dict[str, str] = {}
    for col in frame.columns:
        key = str(col).strip().lstrip("\ufeff")
        canon = aliases.get(key) or aliases.get(key.lower())
        if canon is None:
            if key.lower().startswith("unnamed:") or not key:
                continue
            problems.append(Problem(name, 1 + above, key, "unknown column (see the README for the file format)"))
            continue
        if canon in mapping.values():
            problems.append(Problem(name, 1 + above, key, f"column {canon!r} appears twice"))
            continue
        mapping[col] = canon
    for col in required:
        if col not in mapping.values():
            problems.append(Problem(name, 1 + above, col, "required column is missing"))
    if problems:
        return [], problems
    rows = []
    positions = [(list(frame.columns).index(col), canon) for col, canon in mapping.items()]
    for i, record in enumerate(frame.to_numpy(dtype=object).tolist()):
        row = {canon: str(record[pos]).strip() for pos, canon in positions}
        for col in optional:
            row.setdefault(col, "")
        if not any(row.values()):
            continue  # blank line
        rows.append((i + 2 + above, row))
    return rows, []


def alias_map(pairs: dict[str, list[str]]) -> dict[str, str]:
    """{alias (lower-cased) -> canonical name} including each canonical name itself."""
    out = {}
    for canon, names in pairs.items():
        out[canon] = canon
        for n in names:
            out[n] = canon
            out[n.lower()] = canon
    return out
