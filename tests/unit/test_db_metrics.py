import pytest

from service.adapters.db_metrics import operation_of, shape_id, statement_shape


@pytest.mark.parametrize(("statement", "operation"), [
    ("SELECT 1", "select"),
    ("  update streams SET head = head + 1", "update"),
    ("WITH bumped AS (INSERT INTO streams (a) SELECT 1 RETURNING a) "
     "INSERT INTO entries (user_id) SELECT a FROM bumped", "insert"),
    ("WITH x AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x", "select"),
    ("PRAGMA journal_mode=WAL", "other"),
    ("", "other"),
])
def test_a_statement_is_filed_under_its_own_verb(statement, operation):
    assert operation_of(statement) == operation


@pytest.mark.parametrize(("statement", "shape"), [
    ("SELECT * FROM t WHERE id = 42 AND name = 'o''neil'",
     "SELECT * FROM t WHERE id = ? AND name = ?"),
    ("UPDATE s SET a = %(a)s WHERE u IN (%(u_1)s, %(u_2)s,\n %(u_3)s)",
     "UPDATE s SET a = ? WHERE u IN (?)"),
    ("SELECT :x, $$secret$$, 1.5e3, c::int FROM t1", "SELECT ?, ?, ?, c::int FROM t1"),
    ("INSERT INTO t VALUES (?, ?)", "INSERT INTO t VALUES (?)"),
])
def test_a_shape_keeps_the_statement_and_drops_every_value(statement, shape):
    assert statement_shape(statement) == shape


def test_a_shape_is_bounded_and_its_id_is_stable():
    shape = statement_shape("SELECT " + ", ".join(f"c{i}" for i in range(200)) + " FROM t")
    assert len(shape) == 240
    assert shape_id(shape) == shape_id(shape) and len(shape_id(shape)) == 8
