"""Auditor tables (transactions, postings, lots, tallies, projects, balances) as CSV, XLSX or Parquet.

Rows stream from the database in batches, so memory stays flat on large ledgers. Every text
cell that a spreadsheet would run as a formula is neutralised with a leading apostrophe.
"""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, text

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "transactions": ("SELECT t.seq, t.kind, t.effective_date, t.booked_at, t.actor, t.memo, t.ref, t.project_id, "
                     "t.rulebook_version, t.meta, t.prev_hash, t.hash FROM txn t {where} ORDER BY t.seq",
                     [("seq", "序号"), ("kind", "类型"), ("effective_date", "生效日期"), ("booked_at", "记账时间"),
                      ("actor", "经办人"), ("memo", "摘要"), ("ref", "文号"), ("project_id", "项目编号"),
                      ("rulebook_version", "规则版本"), ("meta", "元数据"), ("prev_hash", "前一哈希"), ("hash", "哈希")]),
    "postings": ("SELECT p.txn_seq, p.account, p.lot, p.pollutant, p.amount_g FROM posting p JOIN txn t "
                 "ON t.seq = p.txn_seq {where} ORDER BY p.txn_seq, p.id",
                 [("txn_seq", "交易序号"), ("account", "账户"), ("lot", "批次"), ("pollutant", "污染物"),
                  ("amount_g", "数量(克)")]),
    "lots": ("SELECT serial, tally_id, pollutant, zone, effective_date, expires, issued_g FROM lot {where_lot} "
             "ORDER BY serial",
             [("serial", "批次"), ("tally_id", "测算编号"), ("pollutant", "污染物"), ("zone", "区域"),
              ("effective_date", "生效日期"), ("expires", "到期日期"), ("issued_g", "入库量(克)")]),
    "tallies": ("SELECT t.tally_id, t.source_id, s.name, t.measure, t.zone, t.pollutant, t.baseline_actual, t.permitted, "
                "t.post, t.unit, t.baseline_year, t.effective_date, t.method, t.assessor, t.report_no, t.creditable_g, "
                "t.supersedes FROM tally t JOIN source s ON s.source_id = t.source_id {where_tally} ORDER BY t.tally_id",
                [("tally_id", "测算编号"), ("source_id", "平衡源编号"), ("source_name", "企业名称"), ("measure", "措施"),
                 ("zone", "区域"), ("pollutant", "污染物"), ("baseline_actual", "实际排放量"), ("permitted", "许可排放量"),
                 ("post", "改造后排放量"), ("unit", "单位"), ("baseline_year", "基准年"), ("effective_date", "生效日期"),
                 ("method", "测算方法"), ("assessor", "测算单位"), ("report_no", "报告编号"),
                 ("creditable_g", "可入库量(克)"), ("supersedes", "替代测算编号")]),
    "projects": ("SELECT p.project_id, p.name, p.zone, p.industry, p.priority, p.needed_by, p.must_fund, p.state, "
                 "p.doc, n.pollutant, n.increment_g, n.ratio FROM project p JOIN project_need n "
                 "ON n.project_id = p.project_id ORDER BY p.project_id, n.pollutant",
                 [("project_id", "项目编号"), ("name", "项目名称"), ("zone", "区域"), ("industry", "行业"),
                  ("priority", "优先级"), ("needed_by", "需求日期"), ("must_fund", "必须保障"), ("state", "状态"),
                  ("doc", "批复文号"), ("pollutant", "污染物"), ("increment_g", "新增量(克)"), ("ratio", "替代比例")]),
    "balances": ("SELECT p.account, p.lot, p.pollutant, SUM(p.amount_g) FROM posting p JOIN txn t "
                 "ON t.seq = p.txn_seq {where} GROUP BY p.account, p.lot, p.pollutant "
                 "HAVING SUM(p.amount_g) <> 0 ORDER BY p.account, p.lot",
                 [("account", "账户"), ("lot", "批次"), ("pollutant", "污染物"), ("amount_g", "余额(克)")]),
}


def neutralise(value):
    """Make a text cell safe to open in a spreadsheet: formulas become plain text."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def iter_table(engine: Engine, name: str, as_of: dt.date | None) -> Iterator[tuple]:
    sql, _ = TABLES[name]
    args = {}
    where = where_lot = where_tally = ""
    if as_of is not None:
        where, where_lot, where_tally = ("WHERE t.effective_date <= :d", "WHERE effective_date <= :d",
                                         "WHERE t.effective_date <= :d")
        args["d"] = as_of
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(
            text(sql.format(where=where, where_lot=where_lot, where_tally=where_tally)), args)
        for row in result:
            yield tuple(neutralise(v) for v in row)


def headers(name: str, lang: str) -> list[str]:
    cols = TABLES[name][1]
    return [f"{zh} {en}" if lang == "zh" else en for en, zh in cols]


def write_tables(engine: Engine, fmt: str, out: str, as_of: dt.date | None = None, lang: str = "en") -> list[str]:
    """csv / parquet: a folder with one file per table; xlsx: one workbook, one sheet per table."""
    path = Path(out)
    written = []
    if fmt == "xlsx":
        from openpyxl import Workbook
        wb = Workbook(write_only=True)
        for name in TABLES:
            ws = wb.create_sheet(name)
            ws.append(headers(name, lang))
            for row in iter_table(engine, name, as_of):
                ws.append(list(row))
        path.parent.mkdir(parents=True, exist_ok=True)
        wb.save(path)
        return [str(path)]
    path.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if fmt == "csv":
            target = path / f"{name}.csv"
            with open(target, "w", newline="", encoding="utf-8-sig") as fh:
                w = csv.writer(fh)
                w.writerow(headers(name, lang))
                for row in iter_table(engine, name, as_of):
                    w.writerow(row)
        elif fmt == "parquet":
            target = path / f"{name}.parquet"
            _parquet(engine, name, as_of, target, headers(name, lang))
        else:
            raise ValueError(f"unknown table format {fmt!r}")
        written.append(str(target))
    return written


INT_COLUMNS = {"seq", "txn_seq", "priority", "rulebook_version", "baseline_year"}


def _parquet(engine: Engine, name: str, as_of, target: Path, cols: list[str]) -> None:
    """Write one table in batches with an explicit schema: int64 for grams and counters, else text."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    english = [en for en, _ in TABLES[name][1]]
    types = [pa.int64() if (en.endswith("_g") or en in INT_COLUMNS) else pa.string() for en in english]
    schema = pa.schema([pa.field(c, t) for c, t in zip(cols, types)])

    def arrays(batch):
        columns = list(zip(*batch)) if batch else [[] for _ in cols]
        return [pa.array([None if v is None else (int(v) if t == pa.int64() else str(v)) for v in col], type=t)
                for col, t in zip(columns, types)]

    with pq.ParquetWriter(target, schema) as writer:
        batch = []
        for row in iter_table(engine, name, as_of):
            batch.append(row)
            if len(batch) >= 50_000:
                writer.write_table(pa.Table.from_arrays(arrays(batch), schema=schema))
                batch = []
        writer.write_table(pa.Table.from_arrays(arrays(batch), schema=schema))
