"""Files a command writes (exports, report, statements, plan files): never a half-written file, never
a database overwritten.

A file is written under a temporary name beside its target and renamed into place only once complete
(os.replace: the old file stays whole until then, and is left untouched if anything fails). The
temporary file is created at the first write, so a command whose database does not answer writes
nothing at all. A folder (CSV/Parquet export, plan files) is written as a temporary folder beside the
target and renamed into place, with a manifest.json (each file's rows and sha256) that
`quota verify --export FOLDER` checks. An existing target folder is replaced only when it holds
nothing but files the export itself writes (an earlier export); otherwise the export is refused and
nothing is deleted. A target that is the ledger's own database file (or its -wal/-shm/-journal/-writer.lock),
or any SQLite database, is refused.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

from quota.errors import Refused

SQLITE_MAGIC = b"SQLite format 3\x00"
XLSX_TIME = dt.datetime(2000, 1, 1)  # an xlsx file's created/modified properties (steady_workbook)
MANIFEST = "manifest.json"


def _db_files(db) -> set[Path]:
    """The files of a SQLite database given as an engine, URL or URL string (none for PostgreSQL)."""
    if db is None:
        return set()
    from sqlalchemy import make_url
    url = getattr(db, "url", db)
    url = make_url(str(url)) if isinstance(url, str) else url
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return set()
    base = Path(url.database).expanduser().resolve()
    from quota.store.db import WRITER_LOCK_SUFFIX  # the writers' lock file: replaced, it would split the queue
    return {Path(str(base) + s) for s in ("", "-wal", "-shm", "-journal", WRITER_LOCK_SUFFIX)}


def is_sqlite_file(path: Path | str) -> bool:
    """True if the file starts with SQLite's 16-byte header (only a regular file is opened: reading a FIFO or
    /dev/stdout would wait forever)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def check_target(path: Path | str, db=None, folder: bool = False) -> Path:
    """Refuse a target that is the ledger's database, any SQLite database, or of the wrong kind."""
    p = Path(path)
    if p.expanduser().resolve() in _db_files(db):
        raise Refused("output_is_database", path=str(path), reason="ledger")
    if folder:
        if p.exists() and not p.is_dir():
            raise Refused("output_kind", path=str(path), reason="not_folder")
        if p.is_dir():
            for child in sorted(p.iterdir()):
                if is_sqlite_file(child) or child.expanduser().resolve() in _db_files(db):
                    raise Refused("output_is_database", path=str(child), reason="in_folder")
    else:
        if p.is_dir():
            raise Refused("output_kind", path=str(path), reason="is_folder")
        if _special(p) or _device_path(p):  # a FIFO, /dev/stdout, /dev/null: the rename would replace it by a file
            raise Refused("output_not_regular", path=str(path))
        if is_sqlite_file(p):
            raise Refused("output_is_database", path=str(path), reason="sqlite")
    return p


def _special(path: Path) -> bool:
    """True if `path` exists and is neither a regular file nor a folder (a FIFO, a device, a socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _device_path(path: Path) -> bool:
    """True for a name under /dev or /proc (but /dev/shm), or a symlink whose chain passes through one:
    `/dev/stdout` is a symlink to /proc/self/fd/1, whose target is a regular file when stdout is redirected to
    one, and so is a user's own `out.jsonl -> /proc/self/fd/1`; renaming into place would replace the symlink.
    Every hop of the chain is looked at, since the last one resolves to the file stdout happens to be."""
    here = os.path.abspath(path)
    names = {here, os.path.realpath(path),
             os.path.join(os.path.realpath(os.path.dirname(here)), os.path.basename(here))}
    hop, seen = here, set()
    while os.path.islink(hop) and hop not in seen and len(seen) < 40:
        seen.add(hop)
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
        names.add(hop)
    return any(name.startswith(("/dev/", "/proc/")) and not name.startswith("/dev/shm/") for name in names)


def _mode_for(target: Path, base: int = 0o666) -> int:
    """The permissions the file would get if created normally (or the ones the old one had)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return base & ~umask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class _PendingFile:
    """A text (or binary) file whose temporary twin is created at the first write."""

    def __init__(self, target: Path, mode: str, encoding: str | None, newline: str | None):
        self.target, self.mode, self.encoding, self.newline = target, mode, encoding, newline
        self.tmp: Path | None = None
        self._fh = None

    def _open(self):
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        self.tmp = Path(name)
        self._fh = os.fdopen(fd, self.mode, encoding=self.encoding, newline=self.newline)
        return self._fh

    def write(self, data):
        return (self._fh or self._open()).write(data)

    def writelines(self, lines: Iterable):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._fh:
            self._fh.flush()

    def _commit(self, db) -> None:
        fh = self._fh or self._open()  # an output with no content is still an (empty) file
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        check_target(self.target, db)  # again: the target may have appeared while we wrote
        os.chmod(self.tmp, _mode_for(self.target))
        os.replace(self.tmp, self.target)
        _fsync_dir(self.target.parent)

    def _discard(self) -> None:
        if self._fh:
            self._fh.close()
        if self.tmp:
            self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """An OSError about the temporary twin of `target` (no space, no permission...) names the target the user gave."""
    try:
        yield
    except OSError as exc:
        twin = str(target.parent / f".{target.name}.")
        if exc.filename and str(exc.filename).startswith(twin) or exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise


@contextlib.contextmanager
def atomic_file(path: Path | str, db=None, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[_PendingFile]:
    """A file-like object; the target appears, complete, when the block ends without an error."""
    target = check_target(path, db)
    if "b" in mode:
        encoding = None
    pending = _PendingFile(target, mode, encoding, newline)
    try:
        with _naming(target):
            yield pending
            pending._commit(db)
    except BaseException:
        pending._discard()
        raise


@contextlib.contextmanager
def atomic_path(path: Path | str, db=None) -> Iterator[Path]:
    """A temporary path beside the target, for writers that want a file name (openpyxl, pyarrow)."""
    target = check_target(path, db)
    with _naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with _naming(target):
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            check_target(target, db)
            os.chmod(tmp, _mode_for(target))
            os.replace(tmp, target)
            _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_folder(target: Path | str, names: Iterable[str], db=None) -> None:
    """Refuse a target folder that is not a folder, holds a database, or holds files the export does not
    write (replacing it would delete them)."""
    target, names = Path(target), set(names)
    check_target(target, db, folder=True)
    if target.is_dir():
        foreign = sorted(c.name for c in target.iterdir() if c.name not in names | {MANIFEST} or not c.is_file())
        if foreign:
            raise Refused("output_not_ours", path=str(target), files=foreign)


@contextlib.contextmanager
def atomic_dir(path: Path | str, names: Iterable[str], db=None) -> Iterator[Path]:
    """A temporary folder beside the target; renamed into place when the block ends without an error.

    `names` are the files the export writes: an existing target folder holding only those (and a
    manifest) is an earlier export and is replaced; any other existing folder is refused.
    """
    target = Path(os.path.abspath(path))  # "." and "dir/" name a folder that can be renamed
    names = set(names)
    check_folder(target, names, db)
    with _naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with _naming(target):
            yield tmp
        for child in tmp.iterdir():
            with open(child, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(target, 0o777))
        check_folder(target, names, db)
        old = None
        if target.exists():  # an earlier export: moved aside, the new one moved in, the old one removed
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "x")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- manifests

def save_xlsx(book, path: Path | str) -> None:
    """Save an openpyxl workbook with XLSX_TIME as its created and modified properties, where openpyxl's own
    save stamps the time of writing: the same content makes the same file and size (a download's HEAD and GET
    agree on its length; a file written twice compares equal). When it was written is the ledger's and the
    manifest's to say. openpyxl's save_workbook, less the stamp."""
    from openpyxl.writer.excel import ExcelWriter
    if book.write_only and not book.worksheets:
        book.create_sheet()
    book.properties.created = book.properties.modified = XLSX_TIME
    ExcelWriter(book, _SteadyZip(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True)).save()  # closes the archive


class _SteadyZip(zipfile.ZipFile):
    """A zip archive whose members carry XLSX_TIME, where zipfile stamps each with the clock (writestr) or its
    source file's time (write: openpyxl's sheets go through temporary files): part of save_xlsx's same bytes."""

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=XLSX_TIME.timetuple()[:6])
        info.compress_type, info.external_attr = self.compression, 0o600 << 16
        return info

    def writestr(self, zinfo_or_arcname, data, *args, **kwargs):
        if not isinstance(zinfo_or_arcname, zipfile.ZipInfo):
            zinfo_or_arcname = self._info(zinfo_or_arcname)
        super().writestr(zinfo_or_arcname, data, *args, **kwargs)

    def write(self, filename, arcname=None, *args, **kwargs):
        info = self._info(arcname or os.path.basename(filename))
        info.file_size = os.path.getsize(filename)  # zipfile decides on Zip64 from it, as its own write does
        with open(filename, "rb") as src, self.open(info, "w") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, fmt: str, rows: dict[str, int], **info) -> dict:
    """manifest.json in `folder`: the format, `info` (head, as_of...) and each file's rows, bytes, sha256."""
    manifest = {"format": fmt, "format_version": 1, **info,
                "files": [{"name": name, "rows": n, "bytes": (folder / name).stat().st_size,
                           "sha256": sha256_file(folder / name)} for name, n in sorted(rows.items())]}
    (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")
    return manifest
