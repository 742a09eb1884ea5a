"""Spreadsheets as bureaus make them: GBK CSV from Chinese Excel, title rows above the header, blank lines, a
blank first sheet, and a file with thousands of bad rows."""
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from cli.main import app
from quota.ledger import balances
from quota.intake import project_files, tallies
from quota.errors import ValidationFailed
from tests.conftest import DATA, TALLY_HEADER

runner = CliRunner()
ROWS = (DATA / "tallies.csv").read_text(encoding="utf-8").splitlines()


def test_a_gbk_csv_from_chinese_excel_imports(engine, tmp_path):
    header = "测算编号,平衡源编号,企业名称,措施,区域,污染物,基准排放量,许可排放量,改造后排放量,单位,基准年,生效日期,测算方法,测算单位,报告编号"
    path = tmp_path / "gbk.csv"
    path.write_bytes((header + "\n" + "\n".join(ROWS[1:4]) + "\n").encode("gbk"))
    result = tallies.import_tallies(engine, str(path), actor="clerk")
    assert result["tallies"] == 3
    assert {r["tally_id"] for r in balances.balance(engine, by="lot")["rows"]} == {"T2022-001", "T2022-002", "T2022-003"}


def test_row_numbers_are_the_files_own_lines_despite_blank_lines(engine, tmp_path):
    path = tmp_path / "blank.csv"
    bad = ROWS[1].replace(",COD,", ",XYZ,")
    path.write_text("\n".join([ROWS[0], ROWS[2], "", "", bad]) + "\n", encoding="utf-8")  # the bad row: line 5
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(engine, str(path), actor="clerk")
    assert [(p.row, p.column) for p in info.value.problems] == [(5, "pollutant")]


def test_an_xlsx_with_a_title_row_and_a_blank_first_sheet_imports(engine, tmp_path):
    import pandas as pd
    from openpyxl import load_workbook
    path = tmp_path / "titled.xlsx"
    frame = pd.read_csv(DATA / "tallies.csv", dtype=str, keep_default_na=False).head(3)
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        pd.DataFrame().to_excel(xl, sheet_name="说明", index=False)
        frame.to_excel(xl, sheet_name="测算", index=False, startrow=2)
    wb = load_workbook(path)
    wb["测算"]["A1"] = "金坛区平衡源测算汇总表"  # a title above the header, as bureaus make them
    wb.save(path)
    assert tallies.import_tallies(engine, str(path), actor="clerk")["tallies"] == 3


def test_a_file_of_many_bad_rows_prints_a_screenful(db_url, tmp_path):
    assert runner.invoke(app, ["--db", db_url, "init", "--rules", str(DATA / "rules.toml")]).exit_code == 0
    path = tmp_path / "bad.csv"
    path.write_text(TALLY_HEADER + "\n" + "\n".join(f"T{i},S{i},厂,closure,JT-YT,XYZ,1,,,t/a,,2024-01-01,m,a,R"
                                                   for i in range(1500)) + "\n", encoding="utf-8")
    r = runner.invoke(app, ["--db", db_url, "tally", "import", str(path)])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 102 and "1400 more problem(s)" in lines[-1]


def test_number_cells_read_as_excel_shows_them(engine, tmp_path):
    """A number cell is a binary float: 0.00001 typed in Excel used to be read as '1e-05' (refused: "no exponent
    form; write the digits out") and =0.1+0.2 as 0.30000000000000004 (a requirement one gram too big)."""
    from openpyxl import Workbook
    from quota.intake import project_files
    from quota.ledger import projects
    path = tmp_path / "numbers.xlsx"
    book = Workbook()
    sheet = book.active
    sheet.append(["project_id", "name", "zone", "industry", "pollutant", "increment", "unit", "priority"])
    sheet.append(["PX-1", "x", "JT-YT", "chemical", "COD", 0.1 + 0.2, "t/a", 7.5])
    sheet.append(["PX-2", "y", "JT-YT", "chemical", "COD", 0.00001, "t/a", 0.0001])
    sheet.append(["PX-3", "z", "JT-YT", "chemical", "TP", 2.0, "t/a", 1000000.0])
    book.save(path)
    project_files.import_projects(engine, str(path), actor="clerk")
    from quota.rules import versions
    with engine.connect() as conn:
        found = {p.project_id: p for p in projects.load_projects(conn, versions.current(conn)[1])}
    assert {k: (p.priority, {n.pollutant: n.increment_g for n in p.needs}) for k, p in found.items()} == {
        "PX-1": (Decimal("7.5"), {"COD": 300_000}), "PX-2": (Decimal("0.0001"), {"COD": 10}),
        "PX-3": (1_000_000, {"TP": 2_000_000})}


def test_a_gbk_csv_that_kept_a_utf8_bom_imports(engine, tmp_path):
    """A UTF-8 file's BOM kept when it was saved again as GBK: read as GB18030, the BOM used to eat the first
    header's first letter ('锘縯ally_id': an unknown column and a missing one)."""
    path = tmp_path / "gbk-bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(ROWS[:4]) + "\n").encode("gbk"))
    read: dict = {}
    result = tallies.import_tallies(engine, str(path), actor="clerk", read=read)
    assert result["tallies"] == 3 and read["encoding"] == "gb18030"
    assert {r["tally_id"] for r in balances.balance(engine, by="lot")["rows"]} == {"T2022-001", "T2022-002", "T2022-003"}


def test_a_pipe_is_refused_as_a_pipe_not_as_an_empty_file(engine, tmp_path):
    """`quota tally import <(iconv ... x.csv)`: a pipe is read once, so its second pass found an empty file."""
    import os
    from tests.conftest import snapshot
    before = snapshot(engine)
    for importer in (tallies.import_tallies, project_files.import_projects):
        r, w = os.pipe()
        os.write(w, ("\n".join(ROWS[:4]) + "\n").encode())
        os.close(w)
        try:
            with pytest.raises(ValidationFailed) as info:
                importer(engine, f"/proc/self/fd/{r}", actor="clerk")
        finally:
            os.close(r)
        assert [p.code for p in info.value.problems] == ["not_regular_file"]
    assert snapshot(engine) == before


def test_the_cli_says_which_encoding_it_read_and_takes_a_sheet_by_name(engine, db_url, tmp_path):
    """Through `quota tally import`: a GBK file is read and said to be GB18030 on stderr (in the user's language);
    --sheet picks a sheet of a workbook, and an unknown sheet is refused naming the sheets there are."""
    header = "测算编号,平衡源编号,企业名称,措施,区域,污染物,基准排放量,许可排放量,改造后排放量,单位,基准年,生效日期,测算方法,测算单位,报告编号"
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes((header + "\n" + "\n".join(ROWS[1:3]) + "\n").encode("gbk"))
    r = runner.invoke(app, ["--db", db_url, "tally", "import", str(gbk), "--dry-run"])
    assert r.exit_code == 0 and "read gbk.csv as GB18030 text (not UTF-8)" in r.stderr, r.output
    r = runner.invoke(app, ["--db", db_url, "--lang", "zh", "tally", "import", str(gbk), "--dry-run"])
    assert r.exit_code == 0 and "已按 GB18030 编码读取 gbk.csv" in r.stderr

    import pandas as pd
    book = tmp_path / "two.xlsx"
    frame = pd.read_csv(DATA / "tallies.csv", dtype=str, keep_default_na=False)
    with pd.ExcelWriter(book, engine="openpyxl") as xl:
        frame.head(2).to_excel(xl, sheet_name="old", index=False)
        frame.iloc[2:5].to_excel(xl, sheet_name="new", index=False, startrow=1)
    r = runner.invoke(app, ["--db", db_url, "tally", "import", str(book), "--sheet", "nope", "--json"])
    assert r.exit_code == 1
    problem = __import__("json").loads(r.stdout)["error"]["problems"][0]
    assert problem["code"] == "no_sheet" and problem["facts"]["sheets"] == ["old", "new"]
    r = runner.invoke(app, ["--db", db_url, "tally", "import", str(book), "--sheet", "new"])
    assert r.exit_code == 0 and "read two.xlsx: sheet 'new', header on row 2" in r.stderr, r.output
    lots = {row["tally_id"] for row in balances.balance(engine, by="lot")["rows"]}
    assert lots == set(frame.iloc[2:5]["tally_id"])  # the sheet named, not the first one


def test_import_help_lists_the_columns_with_their_chinese_headers():
    text = " ".join(runner.invoke(app, ["tally", "import", "--help"]).stdout.split())  # as wrapped for any width
    assert "tally_id (测算编号)" in text and "baseline_actual (基准排放量 /" in text and "--sheet" in text
    text = " ".join(runner.invoke(app, ["project", "import", "--help"]).stdout.split())
    assert "project_id (项目编号)" in text and "must_fund (必须保障 / 必保)" in text


def test_a_csv_half_utf8_half_gbk_names_the_line_where_the_encoding_changes(engine, tmp_path):
    """GBK rows pasted into a UTF-8 file: the refusal said only "byte 266", useless in a spreadsheet."""
    from tests.conftest import snapshot
    path = tmp_path / "mixed.csv"
    path.write_bytes(("\n".join(ROWS[:6]) + "\n").encode("utf-8") + ("\n".join(ROWS[6:9]) + "\n").encode("gbk"))
    before = snapshot(engine)
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(engine, str(path), actor="clerk")
    [problem] = info.value.problems
    assert problem.code == "not_text" and problem.facts["line"] == 7 and "line 7 is not UTF-8" in problem.message
    assert "第 7 行不是 UTF-8" in problem.text("zh")
    assert snapshot(engine) == before
