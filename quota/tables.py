"""Reading CSV/XLSX input files into rows of text, with header aliases (English and Chinese)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import Problem


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_rows(path: str, aliases: dict[str, str], required: list[str], optional: list[str]
              ) -> tuple[list[tuple[int, dict[str, str]]], list[Problem]]:
    """Rows as (spreadsheet row number, {canonical column: stripped text}); problems as data.

    Header names are matched case-insensitively after trimming, and Chinese aliases map to
    the canonical English names. Cell values are always read as text (never as floats).
    """
    import pandas as pd  # heavy: imported only by the commands that read files

    name = Path(path).name
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            frame = pd.read_excel(path, dtype=str, keep_default_na=False, sheet_name=0, engine="openpyxl")
        elif suffix in (".csv", ".txt", ""):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                                skipinitialspace=True)
        else:
            return [], [Problem(name, 0, "", f"unsupported file type {suffix!r} (use .csv or .xlsx)")]
    except FileNotFoundError:
        return [], [Problem(name, 0, "", "file not found")]
    except UnicodeDecodeError as exc:
        return [], [Problem(name, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    except Exception as exc:  # malformed CSV/XLSX of any kind: report, do not crash
        return [], [Problem(name, 0, "", f"cannot read file: {type(exc).__name__}: {exc}")]
    problems: list[Problem] = []
    mapping: dict[str, str] = {}
    for col in frame.columns:
        key = str(col).strip().lstrip("\ufeff")
        canon = aliases.get(key) or aliases.get(key.lower())
        if canon is None:
            if key.lower().startswith("unnamed:"):
                continue
            problems.append(Problem(name, 1, key, "unknown column (see the README for the file format)"))
            continue
        if canon in mapping.values():
            problems.append(Problem(name, 1, key, f"column {canon!r} appears twice"))
            continue
        mapping[col] = canon
    for col in required:
        if col not in mapping.values():
            problems.append(Problem(name, 1, col, "required column is missing"))
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
        rows.append((i + 2, row))
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
