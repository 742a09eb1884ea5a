"""Spreadsheets as bureaus make them: GBK CSV from Chinese Excel, title rows above the header, blank lines, a
blank first sheet, and a file with thousands of bad rows."""
import pytest
from typer.testing import CliRunner

from cli.main import app
from quota.ledger import balances
from quota.intake import tallies
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
