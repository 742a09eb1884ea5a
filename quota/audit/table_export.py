"""Auditor tables (transactions, postings, lots, tallies, projects, balances) as CSV, XLSX or Parquet.

Rows stream from the database in batches, so memory stays flat on large ledgers. Every text
cell that a spreadsheet would run as a formula is neutralised with a leading apostrophe.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, text

from quota.audit.jsonl import unreadable
from quota.store import db
from quota.ledger import posting as ledger
from quota import outfiles, units
from quota.errors import Problem

MANIFEST_FORMAT = "quota-tables"

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
    "projects": ("SELECT p.project_id, p.name, p.zone, p.industry, p.priority_e4, p.needed_by, p.must_fund, p.state, "
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


def iter_table(conn: Connection, name: str, as_of: dt.date | None) -> Iterator[tuple]:
    """The rows of one table, read on `conn` (the export's one snapshot)."""
    sql, _ = TABLES[name]
    args = {}
    where = where_lot = where_tally = ""
    if as_of is not None:
        where, where_lot, where_tally = ("WHERE t.effective_date <= :d", "WHERE effective_date <= :d",
                                         "WHERE t.effective_date <= :d")
        args["d"] = as_of
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(
        text(sql.format(where=where, where_lot=where_lot, where_tally=where_tally)), args)
    exact = [i for i, (en, _) in enumerate(TABLES[name][1]) if en == "priority"]  # stored in ten-thousandths
    for row in result:
        if exact:
            row = tuple(units.priority_from_e4(v) if i in exact and v is not None else v for i, v in enumerate(row))
        yield tuple(neutralise(v) for v in row)


def headers(name: str, lang: str) -> list[str]:
    cols = TABLES[name][1]
    return [f"{zh} {en}" if lang == "zh" else en for en, zh in cols]


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction for every table of an export: REPEATABLE READ on PostgreSQL (one snapshot
    for all statements); on SQLite (WAL) a read transaction's snapshot is taken at its first read."""
    conn = engine.connect()
    try:
        if conn.dialect.name != "sqlite":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn
    finally:
        conn.close()


def file_names(fmt: str) -> list[str]:
    return [f"{name}.{fmt}" for name in TABLES]


def write_tables(engine: Engine, fmt: str, out: str, as_of: dt.date | None = None, lang: str = "en") -> list[str]:
    """csv / parquet: a folder with one file per table and a manifest.json; xlsx: one workbook, one sheet
    per table. All tables are read in one snapshot; the output appears complete or not at all
    (quota.outfiles): an earlier export in the same place is replaced only once the new one is whole."""
    if fmt not in ("csv", "parquet", "xlsx"):
        raise ValueError(f"unknown table format {fmt!r}")
    path = Path(out)
    outfiles.check_target(path, engine, folder=fmt != "xlsx")
    with snapshot(engine) as conn:
        head_seq, head_hash = db.chain_head(conn)  # the database has answered: now files may be written
        if fmt == "xlsx":
            from openpyxl import Workbook
            wb, saving = Workbook(write_only=True), False
            try:
                for name in TABLES:
                    ws = wb.create_sheet(name)
                    ws.append(headers(name, lang))
                    for row in iter_table(conn, name, as_of):
                        ws.append(list(row))
                with outfiles.atomic_path(path, engine) as tmp:  # an unwritable target fails here, before saving
                    saving = True
                    outfiles.save_xlsx(wb, tmp)
            except BaseException:
                if not saving:
                    for ws in wb.worksheets:  # close the sheets' temporary files
                        ws.close()
                raise
            return [str(path)]
        rows: dict[str, int] = {}
        with outfiles.atomic_dir(path, file_names(fmt), engine) as tmp:
            for name in TABLES:
                target = tmp / f"{name}.{fmt}"
                if fmt == "csv":
                    with open(target, "w", newline="", encoding="utf-8-sig") as fh:
                        w = csv.writer(fh)
                        w.writerow(headers(name, lang))
                        n = 0
                        for row in iter_table(conn, name, as_of):
                            w.writerow(row)
                            n += 1
                else:
                    n = _parquet(conn, name, as_of, target, headers(name, lang))
                rows[target.name] = n
            outfiles.write_manifest(tmp, MANIFEST_FORMAT, rows, table_format=fmt, lang=lang,
                                    as_of=as_of.isoformat() if as_of else None, exported_at=ledger.now_iso(),
                                    hash_scheme=ledger.HASH_SCHEME, head={"seq": head_seq, "hash": head_hash})
    return [str(path / name) for name in file_names(fmt)]


INT_COLUMNS = {"seq", "txn_seq", "rulebook_version", "baseline_year"}
# exact decimals: a priority (stored in ten-thousandths, exported as its value) is decimal(11, 4) in Parquet
DECIMAL_COLUMNS = {"priority": (11, 4)}


def _parquet(conn: Connection, name: str, as_of, target: Path, cols: list[str]) -> int:
    """Write one table in batches with an explicit schema: int64 for grams and counters, else text;
    returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    english = [en for en, _ in TABLES[name][1]]
    types = [pa.int64() if (en.endswith("_g") or en in INT_COLUMNS) else
             pa.decimal128(*DECIMAL_COLUMNS[en]) if en in DECIMAL_COLUMNS else pa.string() for en in english]
    schema = pa.schema([pa.field(c, t) for c, t in zip(cols, types)])

    def arrays(batch):
        columns = list(zip(*batch)) if batch else [[] for _ in cols]
        def cell(v, t):
            if v is None:
                return None
            return int(v) if t == pa.int64() else Decimal(v) if pa.types.is_decimal(t) else str(v)
        return [pa.array([cell(v, t) for v in col], type=t) for col, t in zip(columns, types)]

    with pq.ParquetWriter(target, schema) as writer:
        batch, n = [], 0
        for row in iter_table(conn, name, as_of):
            batch.append(row)
            n += 1
            if len(batch) >= 50_000:
                writer.write_table(pa.Table.from_arrays(arrays(batch), schema=schema))
                batch = []
        writer.write_table(pa.Table.from_arrays(arrays(batch), schema=schema))
    return n


def _count_and_last(path: Path, fmt: str) -> tuple[int, dict | None]:
    """Rows of a table file (header excluded) and its last row by English column name."""
    if fmt == "parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        names = [c.split(" ")[-1] for c in table.column_names]
        last = {n: table.column(i)[table.num_rows - 1].as_py() for i, n in enumerate(names)} if table.num_rows else None
        return table.num_rows, last
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        names = [c.split(" ")[-1] for c in next(reader, [])]
        n, last = 0, None
        for row in reader:
            n, last = n + 1, row
    return n, (dict(zip(names, last)) if last else None)


def verify_tables(path: str, expect_head: str | None = None) -> tuple[dict, list[Problem]]:
    """Check a CSV/Parquet export folder against its manifest.json: every file present, no other file,
    each file's sha256 and row count as stated, and (for a full export) the transactions table ending
    at the stated chain head, which must be `expect_head` when given. A missing, truncated or edited
    file is named."""
    folder = Path(path)
    problems: list[Problem] = []
    summary = {"file": path, "hash_scheme": None, "as_of": None, "transactions": 0, "postings": 0,
               "accounts": 0, "final_hash": None, "ok": False}
    try:
        manifest = json.loads((folder / outfiles.MANIFEST).read_text(encoding="utf-8"))
        files = {f["name"]: f for f in manifest["files"]}
        fmt = manifest.get("table_format")
    except (OSError, ValueError, KeyError, TypeError):
        raise unreadable(str(folder / outfiles.MANIFEST), "no_manifest") from None
    if manifest.get("format") == "quota-plan":  # plan run --out: each file's presence and sha256
        fmt = None
    elif manifest.get("format") != MANIFEST_FORMAT or fmt not in ("csv", "parquet"):
        raise unreadable(str(folder / outfiles.MANIFEST), "not_a_table_export", format=str(manifest.get("format")))
    head = manifest.get("head") or {}
    summary.update(hash_scheme=manifest.get("hash_scheme"), as_of=manifest.get("as_of"), final_hash=head.get("hash"))
    for extra in sorted(c.name for c in folder.iterdir() if c.name not in files and c.name != outfiles.MANIFEST):
        problems.append(Problem.of(str(folder / extra), 0, "", "unlisted_file"))
    for name in file_names(fmt) if fmt else ():
        if name not in files:
            problems.append(Problem.of(str(folder / outfiles.MANIFEST), 0, "files", "not_listed", name=name))
    for name, entry in sorted(files.items()):
        target = folder / name
        if not target.is_file():
            problems.append(Problem.of(str(target), 0, "", "listed_missing"))
            continue
        if outfiles.sha256_file(target) != entry.get("sha256"):
            size = target.stat().st_size
            problems.append(Problem.of(str(target), 0, "sha256", "sha_mismatch", size=size, stated=entry.get("bytes")))
            continue
        if fmt is None:
            continue
        try:
            n, last = _count_and_last(target, fmt)
        except Exception as exc:  # an unreadable file whose hash matches: a manifest written for a bad file
            problems.append(Problem.of(str(target), 0, "", "unreadable_table", detail=" ".join(str(exc).split())))
            continue
        if n != entry.get("rows"):
            problems.append(Problem.of(str(target), 0, "rows", "rows_stated", n=n, stated=entry.get("rows")))
        stem = name.rsplit(".", 1)[0]
        if stem in ("transactions", "postings", "balances"):
            summary[{"transactions": "transactions", "postings": "postings", "balances": "accounts"}[stem]] = n
        if stem == "transactions" and manifest.get("as_of") is None:
            seq, digest = (int(last["seq"]), last["hash"]) if last else (0, ledger.GENESIS)
            if (seq, digest) != (head.get("seq"), head.get("hash")):
                problems.append(Problem.of(str(target), n + 1, "hash", "not_manifest_head"))
    if expect_head is not None and head.get("hash") != expect_head:
        problems.append(Problem.of(str(folder / outfiles.MANIFEST), 0, "head", "export_head", end=str(head.get("hash")),
                                   expected=expect_head))
    summary["ok"] = not problems
    return summary, problems
