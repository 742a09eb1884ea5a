"""Hostile input never crashes the importers: every file gives a clean error listing or a clean import."""
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.intake import project_files
from quota.intake import tallies
from quota.errors import ValidationFailed
from quota.rules.book import load_rulebook_file
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot

BOOK = load_rulebook_file(str(DATA / "rules.toml"))
TALLY_COLS = TALLY_HEADER.split(",")
PROJECT_COLS = PROJECT_HEADER.split(",")

cells = st.one_of(
    st.sampled_from(["", " ", "0", "1.5", "-3", "NaN", "nan", "inf", "-Infinity", "1e400", "1e999999999",
                     "9" * 60, "0.0000001", "12,5", "1 000", "=1+1", "@SUM(A1)", "+2", "2024-02-30", "2024-13-01",
                     "2024/05/01", "24-5-1", "closure", "upgrade", "关闭", "t/a", "kg/a", "COD", "NH3-N", "JT-YT",
                     "true", "是", "maybe", "\"quoted\"", "a,b", "line\nbreak", "\x00nul", "\u202eRLO", "😀"]),
    st.text(max_size=12))
headers = st.one_of(st.just(TALLY_COLS), st.permutations(TALLY_COLS),
                    st.lists(st.sampled_from(TALLY_COLS + ["junk", "", "测算编号", "污染物"]), min_size=1, max_size=16))


def write(tmp_path, name, header, rows, delimiter=",", bom=False, encoding="utf-8"):
    import csv
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter)
    w.writerow(header)
    for r in rows:
        w.writerow(r)
    data = buf.getvalue()
    path = tmp_path / name
    raw = data.encode(encoding, errors="replace")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + raw)
    return str(path)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=headers, rows=st.lists(st.lists(cells, min_size=0, max_size=18), max_size=6),
       delimiter=st.sampled_from([",", ";", "\t", "|"]), bom=st.booleans(),
       encoding=st.sampled_from(["utf-8", "gbk", "utf-16"]))
def test_any_tally_file_gives_records_or_problems_never_a_crash(tmp_path_factory, header, rows, delimiter, bom,
                                                                encoding):
    tmp = tmp_path_factory.mktemp("h")
    path = write(tmp, "t.csv", header, rows, delimiter, bom, encoding)
    records, problems = tallies.validate_rows(path, BOOK)
    assert records or problems
    for p in problems:
        assert p.source == "t.csv" and p.message
    for r in records:
        assert r.creditable_g > 0


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.lists(cells, min_size=11, max_size=11), min_size=1, max_size=6))
def test_any_project_file_gives_projects_or_problems_never_a_crash(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("p")
    path = write(tmp, "p.csv", PROJECT_COLS, rows)
    found, problems = project_files.validate_rows(path, BOOK)
    assert found or problems
    assert all(p.row >= 1 and p.column for p in problems if p.row)


def test_excel_files_with_several_sheets_merged_cells_and_formulas(engine, tmp_path):
    from openpyxl import Workbook
    wb = Workbook()
    ws = wb.active
    ws.title = "tallies"
    ws.append(TALLY_COLS)
    ws.append(["X1", "S1", "甲厂", "closure", "JT-YT", "COD", "=2+3", "", "", "t/a", "2020", "2024-01-01", "m", "a", "R1"])
    ws.append(["X2", "S2", "乙厂", "closure", "JT-YT", "COD", "4", "", "", "t/a", "2020", "2024-01-01", "m", "a", "R2"])
    ws.merge_cells("C3:D3")  # merged source name + measure: measure becomes empty
    wb.create_sheet("notes").append(["this sheet is ignored"])
    path = tmp_path / "t.xlsx"
    wb.save(path)
    before = snapshot(engine)
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(engine, str(path), actor="x")
    got = {(p.row, p.column) for p in info.value.problems}
    assert (2, "baseline_actual") in got  # a formula is not an amount
    assert (3, "measure") in got          # the merged cell left measure empty
    assert snapshot(engine) == before


def test_not_a_spreadsheet_at_all(engine, tmp_path):
    for name, data in (("t.xlsx", b"PK\x03\x04 not really a zip"), ("t.csv", b"\xff\xfe\x00\x00garbage"),
                       ("t.ods", b"x"), ("empty.csv", b"")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValidationFailed) as info:
            tallies.import_tallies(engine, str(path), actor="x")
        assert info.value.problems[0].source == name
