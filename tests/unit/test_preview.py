"""The preview of an import file (tables.preview_rows): the rows as the import reads them, bounded."""
from quota.intake import project_files, tables
from tests.conftest import PROJECT_HEADER


def test_the_preview_is_the_imports_own_reading_bounded_to_the_first_rows_and_the_marked_ones(write_csv):
    rows = [f"P-{i}, 项目{i} ,JT-YT,,COD,1.0,t/a,,,," for i in range(1, 11)]
    path = write_csv("p.csv", PROJECT_HEADER, rows[:4] + [""] + rows[4:])  # a blank line: line 6, not a row
    read, problems = tables.read_rows(path, project_files.ALIASES, project_files.REQUIRED, project_files.OPTIONAL)
    assert not problems
    whole = tables.preview_rows(
        path, project_files.ALIASES, project_files.REQUIRED, project_files.OPTIONAL, first=100)
    keys = [canon for _, canon in whole["columns"]]
    assert keys == PROJECT_HEADER.split(",") and whole["total"] == 10 and whole["left_out"] == 0
    assert [(r["row"], dict(zip(keys, r["cells"]))) for r in whole["rows"]] == \
        [(n, {k: cells[k] for k in keys}) for n, cells in read]  # the same rows, numbers and (trimmed) cells
    some = project_files.preview(path, marked={9, 11})
    assert some["first"] == tables.PREVIEW_ROWS
    bounded = tables.preview_rows(path, project_files.ALIASES, project_files.REQUIRED, project_files.OPTIONAL,
                                  marked={9, 11, 99}, first=3)
    assert [r["row"] for r in bounded["rows"]] == [2, 3, 4, 9, 11] and bounded["left_out"] == 5
    assert project_files.preview(write_csv("h.csv", "project_id,nonsense", ["P-1,x"])) is None  # header refused
