import sqlite3

import pytest

from mechscope.errors import MechscopeError
from mechscope.images import png_bytes
from mechscope.store import (
    INDEX,
    delete_rows,
    open_store,
    put_png,
    put_rows,
    read_png,
    read_rows,
    transaction,
)


def _png(value: float) -> bytes:
    import torch

    return png_bytes(torch.full((3, 4, 4), value))


def _row(channel, **kw):
    return {"model": "m", "layer": "conv", "channel": channel, "count": 10, "mean": 0.5, "std": 1.0,
            "fraction_firing": 0.3, "min": -1.0, "max": 2.0, "quantiles": {"0.5": 0.1}, "histogram": [1, 2], **kw}


def test_pngs_are_content_addressed_and_not_duplicated(tmp_path):
    with open_store(tmp_path) as store:
        a, b, a2 = put_png(store, _png(0.2)), put_png(store, _png(0.7)), put_png(store, _png(0.2))
        assert a == a2 and a != b
        assert len(list((tmp_path / "png").rglob("*.png"))) == 2
        assert read_png(store, a) == _png(0.2)
        assert not list(tmp_path.rglob("*.part"))
        (tmp_path / b).write_bytes(_png(0.9))  # tampered with
        with pytest.raises(MechscopeError, match="damaged"):
            read_png(store, b)
        with pytest.raises(MechscopeError, match="PNG"):
            put_png(store, b"not a png")


def test_rows_round_trip_replace_and_delete(tmp_path):
    with open_store(tmp_path) as store:
        with transaction(store):
            put_rows(store, "stats", [_row(0), _row(1)])
        with transaction(store):
            put_rows(store, "stats", [_row(1, mean=9.0)])  # same key: replaced
        rows = read_rows(store, "stats", layer="conv")
        assert [r["mean"] for r in rows] == [0.5, 9.0] and rows[0]["quantiles"] == {"0.5": 0.1}
        with transaction(store):
            assert delete_rows(store, "stats", channel=0) == 1
        assert [r["channel"] for r in read_rows(store, "stats")] == [1]
        with pytest.raises(MechscopeError, match="unknown store table"):
            read_rows(store, "nope")
        with pytest.raises(MechscopeError, match="unknown columns"):
            put_rows(store, "stats", [_row(2, colour="red")])
    with open_store(tmp_path, create=False) as store:  # reopened: still there
        assert len(read_rows(store, "stats")) == 1


def test_interrupted_write_leaves_the_previous_index(tmp_path):
    with open_store(tmp_path) as store:
        with transaction(store):
            put_rows(store, "stats", [_row(0)])
        with pytest.raises(KeyboardInterrupt):
            with transaction(store):
                delete_rows(store, "stats", layer="conv")
                put_rows(store, "stats", [_row(5)])
                raise KeyboardInterrupt
        assert [r["channel"] for r in read_rows(store, "stats")] == [0]


def test_corrupt_or_foreign_index_is_refused_with_the_reason(tmp_path):
    with pytest.raises(MechscopeError, match="no store"):
        open_store(tmp_path / "none", create=False)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / INDEX).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(MechscopeError, match="not a readable SQLite database"):
        open_store(garbage)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    sqlite3.connect(foreign / INDEX).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(MechscopeError, match="not a mechscope store"):
        open_store(foreign)
    old = tmp_path / "old"
    open_store(old).close()
    db = sqlite3.connect(old / INDEX)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(MechscopeError, match="schema version 99"):
        open_store(old)


def test_damaged_pages_are_refused(tmp_path):
    with open_store(tmp_path) as store:
        with transaction(store):
            put_rows(store, "stats", [_row(c) for c in range(300)])
    data = bytearray((tmp_path / INDEX).read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[2 * page + 8: 3 * page] = b"\xff" * (page - 8)  # smash a page of the stats table
    (tmp_path / INDEX).write_bytes(bytes(data))
    with pytest.raises(MechscopeError, match="damaged|not a readable"):
        open_store(tmp_path)


def test_unit_channels_are_the_channels_with_any_per_unit_row(tmp_path):
    from mechscope.store import unit_channels

    with open_store(tmp_path) as store:
        assert unit_channels(store, "m", "conv") == []
        with transaction(store):
            put_rows(store, "stats", [_row(4)])
            put_rows(store, "figures", [{"model": "m", "layer": "conv", "channel": c, "kind": "quilt"}
                                        for c in (-1, 1, 4)])
            put_rows(store, "examples", [{"model": "m", "layer": "conv", "channel": 9, "which": "top", "rank": 0},
                                         {"model": "m", "layer": "other", "channel": 3, "which": "top", "rank": 0},
                                         {"model": "n", "layer": "conv", "channel": 5, "which": "top", "rank": 0}])
            put_rows(store, "layers", [{"model": "m", "layer": "conv", "channels": None}])
        assert unit_channels(store, "m", "conv") == [1, 4, 9]  # layer-wide (-1) rows are no unit; no duplicates
        assert unit_channels(store, "m", "other") == [3]
