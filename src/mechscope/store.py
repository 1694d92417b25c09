"""A results folder: an SQLite index plus content-addressed PNG files.  Never half-written.

Layout of a store folder::

    DIR/index.sqlite          the index (stdlib sqlite3): one row per unit, example, statistic or figure
    DIR/png/ab/abcdef....png  PNG files named by the sha256 of their bytes (``put_png``), written atomically

Rows are keyed by ``(model, layer, channel, ...)``; a layer-wide row (a figure of the whole layer) uses
``channel = -1``.  Settings and other structured values are JSON text columns.  The tables (``TABLES``) are
generic so that scans, the Microscope and later analyses share one store:

* ``layers``   ``(model, layer)``: ``channels``, ``settings`` (JSON: how the rows of this layer were made)
* ``stats``    ``(model, layer, channel)``: ``count, mean, std, fraction_firing, min, max``, ``quantiles`` and
  ``histogram`` (JSON)
* ``examples`` ``(model, layer, channel, which, rank)``: ``dataset_index, value, x, y, png``
* ``figures``  ``(model, layer, channel, kind)``: ``png``, ``settings`` (JSON)

Nothing half-written: PNGs are written (temporary file + rename) before the rows that name them, and rows are
written inside ``transaction`` (SQLite's journal makes it all or nothing), so an interrupted write leaves the
previous index intact and at worst an unreferenced PNG.  ``open_store`` checks that an existing index is an
SQLite file of ours (``application_id``), of the schema version this code reads, and passes
``PRAGMA integrity_check``; otherwise it refuses with the reason.

Example::

    >>> import tempfile
    >>> from mechscope.store import open_store, put_png, put_rows, read_rows, transaction
    >>> with open_store(tempfile.mkdtemp()) as store:
    ...     path = put_png(store, b"\\x89PNG fake bytes")
    ...     with transaction(store):
    ...         n = put_rows(store, "figures", [{"model": "m", "layer": "conv", "channel": -1, "kind": "quilt",
    ...                                           "png": path, "settings": {"bins": 8}}])
    ...     row, = read_rows(store, "figures", model="m")
    >>> path == row["png"], path[:4], len(path), row["settings"]
    (True, 'png/', 75, {'bins': 8})
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mechscope.artefacts import atomic_write_bytes
from mechscope.errors import MechscopeError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x6D736370  # "mscp": marks an index.sqlite as ours
INDEX = "index.sqlite"
_JSON = "json"  # column type marker: values are stored as JSON text and decoded on reading

TABLES: dict[str, dict[str, Any]] = {
    "layers": {"key": ("model", "layer"),
               "columns": {"model": "TEXT", "layer": "TEXT", "channels": "INTEGER", "settings": _JSON}},
    "stats": {"key": ("model", "layer", "channel"),
              "columns": {"model": "TEXT", "layer": "TEXT", "channel": "INTEGER", "count": "INTEGER", "mean": "REAL",
                          "std": "REAL", "fraction_firing": "REAL", "min": "REAL", "max": "REAL",
                          "quantiles": _JSON, "histogram": _JSON}},
    "examples": {"key": ("model", "layer", "channel", "which", "rank"),
                 "columns": {"model": "TEXT", "layer": "TEXT", "channel": "INTEGER", "which": "TEXT",
                             "rank": "INTEGER", "dataset_index": "INTEGER", "value": "REAL", "x": "INTEGER",
                             "y": "INTEGER", "png": "TEXT"}},
    "figures": {"key": ("model", "layer", "channel", "kind"),
                "columns": {"model": "TEXT", "layer": "TEXT", "channel": "INTEGER", "kind": "TEXT", "png": "TEXT",
                            "settings": _JSON}},
}
"""The schema, as data: per table its primary key and its columns (``"json"`` columns hold JSON text)."""


@dataclass(eq=False)
class Store:
    """An open results folder: ``root`` and its SQLite connection ``db``.  Close it (or use ``with``)."""

    root: Path
    db: sqlite3.Connection

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"


def _create(db: sqlite3.Connection) -> None:
    with db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        for name, table in TABLES.items():
            cols = ", ".join(f"{c} {'TEXT' if t == _JSON else t}" for c, t in table["columns"].items())
            db.execute(f"CREATE TABLE {name} ({cols}, PRIMARY KEY ({', '.join(table['key'])}))")


def _check(db: sqlite3.Connection, path: Path) -> None:
    """Refuse an index that is not ours, of another schema version, or damaged, saying which."""
    where = f"store index {str(path)!r}"
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        problems = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as e:
        raise MechscopeError(f"{where} is not a readable SQLite database ({e}); move it away or choose another "
                             "folder") from e
    if app_id != APPLICATION_ID:
        raise MechscopeError(f"{where} is an SQLite file but not a mechscope store (application_id {app_id:#x}); "
                             "choose another folder")
    if problems != ["ok"]:
        raise MechscopeError(f"{where} is damaged (integrity_check: {'; '.join(problems[:3])}); move it away and "
                             "rebuild the store")
    if version != SCHEMA_VERSION:
        raise MechscopeError(f"{where} has schema version {version}; this mechscope reads version {SCHEMA_VERSION}; "
                             "rebuild the store with this version")
    found = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = sorted((set(TABLES) | {"meta"}) - found)
    if missing:
        raise MechscopeError(f"{where} lacks the tables {missing}; it is damaged or foreign; rebuild the store")


def open_store(root: str | os.PathLike, *, create: bool = True, check_same_thread: bool = True) -> Store:
    """Open the store in folder ``root`` (created, with an empty index, when ``create`` and it has none).

    ``check_same_thread=False`` lets threads other than the opening one use the connection (sqlite3's flag of that
    name); the caller must then make sure that only one thread uses it at a time (as the server's pool does).

    Raises ``MechscopeError`` for an index that is not an SQLite file, not a mechscope store, of another schema
    version, or damaged (``PRAGMA integrity_check``), and for a missing index when ``create=False``.
    """
    root = Path(root)
    path = root / INDEX
    if not path.exists():
        if not create:
            raise MechscopeError(f"no store at {str(root)!r} (no {INDEX}); write one first, e.g. mechscope examples")
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{INDEX}.part"  # build the empty index aside, then rename: never a half-made index
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp)
        try:
            _create(db)
        finally:
            db.close()
        os.replace(tmp, path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)  # autocommit; transactions are explicit (``transaction``)
    try:
        _check(db, path)
    except BaseException:
        db.close()
        raise
    return Store(root=root, db=db)


@contextmanager
def transaction(store: Store) -> Iterator[Store]:
    """All writes inside happen together or not at all (rolled back on any exception, interrupts included)."""
    store.db.execute("BEGIN IMMEDIATE")
    try:
        yield store
    except BaseException:
        store.db.execute("ROLLBACK")
        raise
    store.db.execute("COMMIT")


def put_png(store: Store, data: bytes) -> str:
    """Store PNG bytes under the sha256 of their content -> the path relative to the store (``png/ab/ab….png``).

    The same bytes always give the same path and are written once.
    """
    if not data.startswith(b"\x89PNG"):
        raise MechscopeError("put_png takes PNG-encoded bytes (use mechscope.images.png_bytes)")
    digest = hashlib.sha256(data).hexdigest()
    rel = f"png/{digest[:2]}/{digest}.png"
    path = store.root / rel
    if not path.exists():
        atomic_write_bytes(path, data)
    return rel


def read_png(store: Store, rel: str) -> bytes:
    """The bytes of a PNG stored by ``put_png``, checked against the sha256 in its name."""
    path = store.root / rel
    if not path.is_file():
        raise MechscopeError(f"the store {str(store.root)!r} has no file {rel!r}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != Path(rel).stem:
        raise MechscopeError(f"{rel!r} in store {str(store.root)!r} is damaged: its bytes do not match its name")
    return data


def _table(name: str) -> dict[str, Any]:
    if name not in TABLES:
        raise MechscopeError(f"unknown store table {name!r}; tables: {', '.join(TABLES)}")
    return TABLES[name]


def _columns(table: dict[str, Any], names: Iterable[str], what: str) -> None:
    unknown = [n for n in names if n not in table["columns"]]
    if unknown:
        raise MechscopeError(f"unknown {what} {unknown}; columns: {', '.join(table['columns'])}")


def put_rows(store: Store, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert (or replace, by primary key) ``rows`` into ``table``; JSON columns take any JSON-able value.

    Call inside ``transaction`` to make several writes one; returns the number of rows written.
    """
    spec = _table(table)
    cols = list(spec["columns"])
    sql = f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def encode(row: Mapping[str, Any]) -> tuple[Any, ...]:
        _columns(spec, row, f"columns of {table}")
        missing = [c for c in spec["key"] if row.get(c) is None]
        if missing:
            raise MechscopeError(f"a row of {table} lacks its key columns {missing}")
        return tuple(json.dumps(row.get(c)) if t == _JSON else row.get(c) for c, t in spec["columns"].items())

    values = [encode(r) for r in rows]
    store.db.executemany(sql, values)
    return len(values)


def delete_rows(store: Store, table: str, **where: Any) -> int:
    """Delete the rows of ``table`` whose columns equal ``where`` (e.g. ``model=, layer=``) -> rows deleted."""
    spec = _table(table)
    _columns(spec, where, "filter columns")
    clause = " AND ".join(f"{c} = ?" for c in where) or "1"
    return store.db.execute(f"DELETE FROM {table} WHERE {clause}", tuple(where.values())).rowcount


def read_rows(store: Store, table: str, **where: Any) -> list[dict[str, Any]]:
    """Rows of ``table`` whose columns equal ``where``, as dicts (JSON columns decoded), ordered by key."""
    spec = _table(table)
    _columns(spec, where, "filter columns")
    clause = " AND ".join(f"{c} = ?" for c in where) or "1"
    cols = list(spec["columns"])
    cursor = store.db.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {clause} ORDER BY "
                              f"{', '.join(spec['key'])}", tuple(where.values()))
    return [{c: json.loads(v) if spec["columns"][c] == _JSON and v is not None else v for c, v in zip(cols, row)}
            for row in cursor]


def unit_channels(store: Store, model: str, layer: str) -> list[int]:
    """The channels (``>= 0``, ascending) that have any row in a per-unit table (``figures``, ``examples``,
    ``stats``) of ``model`` / ``layer``: the units of a layer whose ``layers`` row does not give their number.

    Example::

        >>> import tempfile
        >>> with open_store(tempfile.mkdtemp()) as store:
        ...     with transaction(store):
        ...         n = put_rows(store, "figures", [{"model": "m", "layer": "l", "channel": c, "kind": "k"}
        ...                                         for c in (7, -1, 2)])
        ...     unit_channels(store, "m", "l"), unit_channels(store, "m", "other")
        ([2, 7], [])
    """
    tables = [name for name, spec in TABLES.items() if "channel" in spec["key"]]
    sql = " UNION ".join(f"SELECT channel FROM {t} WHERE model = ? AND layer = ? AND channel >= 0" for t in tables)
    return sorted(int(r[0]) for r in store.db.execute(sql, (model, layer) * len(tables)))


def count_channels(store: Store, table: str, **where: Any) -> int:
    """How many distinct channels (``>= 0``: units, not layer-wide rows) the rows of ``table`` matching ``where``
    cover, counted by SQLite without reading the rows (e.g. the units of a layer that have statistics).

    Example::

        >>> import tempfile
        >>> with open_store(tempfile.mkdtemp()) as store:
        ...     with transaction(store):
        ...         n = put_rows(store, "figures", [{"model": "m", "layer": "l", "channel": c, "kind": k}
        ...                                         for c, k in ((0, "a"), (0, "b"), (3, "a"), (-1, "a"))])
        ...     count_channels(store, "figures", model="m", layer="l"), count_channels(store, "figures", kind="b")
        (2, 1)
    """
    spec = _table(table)
    if "channel" not in spec["key"]:
        raise MechscopeError(f"table {table!r} has no channel column; tables with one: "
                             f"{', '.join(t for t, s in TABLES.items() if 'channel' in s['key'])}")
    _columns(spec, where, "filter columns")
    clause = " AND ".join([*(f"{c} = ?" for c in where), "channel >= 0"])
    return int(store.db.execute(f"SELECT COUNT(DISTINCT channel) FROM {table} WHERE {clause}",
                                tuple(where.values())).fetchone()[0])


__all__ = ["SCHEMA_VERSION", "TABLES", "Store", "open_store", "transaction", "put_png", "read_png", "put_rows",
           "delete_rows", "read_rows", "unit_channels", "count_channels"]
