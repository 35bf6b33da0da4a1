import pytest

from service.adapters.db_metrics import operation_of


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
