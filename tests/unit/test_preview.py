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


def test_the_rows_with_a_problem_below_the_first_are_bounded_too(write_csv):
    rows = [f"P-{i},项目{i},JT-YT,,COD,1.0,t/a,,,," for i in range(1, 21)]  # lines 2-21
    path = write_csv("p.csv", PROJECT_HEADER, rows)
    some = tables.preview_rows(path, project_files.ALIASES, project_files.REQUIRED, project_files.OPTIONAL,
                               marked=set(range(2, 22)), first=3, most=4)
    assert [r["row"] for r in some["rows"]] == [2, 3, 4, 5, 6, 7, 8] and some["left_out"] == 13
    assert (some["first"], some["most"]) == (3, 4)
    assert project_files.preview(path, marked=set(range(2, 22)))["most"] == tables.PREVIEW_MARKED


def test_a_first_row_longer_than_the_header_is_refused_not_read_under_the_wrong_columns(write_csv):
    """Rows ending in a comma the header lacks: pandas took each row's first cell as an index and read every
    other cell one column to the left (the name as the project id, the zone as the name...); the file is refused
    as a whole, saying why, and its preview (the import's reading) is none."""
    rows = [f"P-{i},项目{i},JT-YT,,COD,1.0,t/a,,,,," for i in range(1, 4)]  # 12 cells under 11 names
    path = write_csv("p.csv", PROJECT_HEADER, rows)
    read, problems = tables.read_rows(path, project_files.ALIASES, project_files.REQUIRED, project_files.OPTIONAL)
    assert read == [] and [(p.row, p.code, p.facts) for p in problems] == [(0, "extra_cells", {"header": 11,
                                                                                             "cells": 12})]
    assert "header names 11 columns" in problems[0].text("en") and "表头只列出 11 列" in problems[0].text("zh")
    assert project_files.preview(path, marked={2}) is None
    fine, problems = tables.read_rows(write_csv("q.csv", PROJECT_HEADER, [r[:-1] for r in rows]), project_files.ALIASES,
                                      project_files.REQUIRED, project_files.OPTIONAL)
    assert not problems and [r["project_id"] for _, r in fine] == ["P-1", "P-2", "P-3"]
