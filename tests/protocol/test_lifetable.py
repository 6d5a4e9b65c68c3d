"""LifeTable: records kept small, and handed out and back whole."""

from __future__ import annotations

import sys

import pytest

from crdtgossip.errors import OperationError
from crdtgossip.keylife import MAX_WRITES
from crdtgossip.protocol.lifetable import LifeTable


def test_a_one_writer_record_is_a_tuple_and_comes_back_as_a_dict() -> None:
    table = LifeTable()
    assert table.wrote("k", "a") == (1, 0)
    assert table.wrote("k", "a") == (2, 0)
    assert table.get("k") == {"a": (2, 0)}
    held = table._records["k"]
    assert held == ("a", 2, 0)
    assert sys.getsizeof(held) < sys.getsizeof({"a": (2, 0)})
    assert "k" in table
    assert len(table) == 1


def test_another_writer_makes_it_a_dict_and_the_fast_path_steps_aside() -> None:
    table = LifeTable()
    table.wrote("k", "a")
    assert table.wrote("k", "b") is None  # not the record's one writer
    record = table.get("k")
    assert record is not None
    record["b"] = (1, 0)
    table.put("k", record)
    assert table._records["k"] == {"a": (1, 0), "b": (1, 0)}
    assert table.wrote("k", "a") is None
    table.put("k", {"b": (3, 3)})  # back to one writer: a tuple again
    assert table._records["k"] == ("b", 3, 3)
    assert table.wrote("k", "b") == (4, 3)


def test_a_handed_out_record_changes_nothing_until_put_back() -> None:
    table = LifeTable()
    table.wrote("k", "a")
    record = table.get("k")
    assert record is not None
    record["a"] = (5, 5)
    assert table.get("k") == {"a": (1, 0)}
    table.put("k", record)
    assert table.copies() == {"k": {"a": (5, 5)}}
    table.pop("k")
    table.pop("k")  # forgetting twice is nothing
    assert table.get("k") is None
    assert list(table) == []


def test_the_last_write_is_refused_with_our_error() -> None:
    table = LifeTable()
    table.put("k", {"a": (MAX_WRITES, 0)})
    with pytest.raises(OperationError, match="no write left"):
        table.wrote("k", "a")
    assert table.get("k") == {"a": (MAX_WRITES, 0)}


def test_the_fingerprint_depends_on_the_record_alone_not_on_its_form() -> None:
    one, two = LifeTable(), LifeTable()
    one.put("k", {"b": (2, 1), "a": (5, 0)})
    two.put("k", {"a": (5, 0), "b": (2, 1)})
    assert one.fingerprint("k") == two.fingerprint("k")
    one.put("k", {"a": (5, 0)})  # a tuple now
    two.put("k", {"a": (5, 0), "b": (2, 1)})
    record = two.get("k")
    assert record is not None
    del record["b"]
    two._records["k"] = record  # the same record kept as a dict
    assert one.fingerprint("k") == two.fingerprint("k")
    assert one.fingerprint("k") != LifeTable().fingerprint("k")
    two.put("k", {"a": (5, 1)})
    assert one.fingerprint("k") != two.fingerprint("k")
