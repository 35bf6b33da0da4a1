"""Every table of the service, in one ``MetaData``: the schema as the code
reads and writes it today.

The schema in a database is made by the migrations
(``service/adapters/migrations``, run by ``python -m service migrate``), not
from here: a test holds the newest migration to this module
(``tests/integration/test_migrations.py``). To change a table, change it here
and add a migration that makes the same change.

The notification log (``notification_log``) is ``log_*`` plus
``publish_keys``; the control event log (``control_log``) is
``control_events``, append-only by triggers the migrations create.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, text

metadata = MetaData()

log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True),  # one row, id 1
    Column("head", BigInteger, nullable=False),  # the newest offset
    Column("streams", BigInteger, nullable=False),  # streams created: a broadcast's recipients
)

entries = Table(
    "log_entries",
    metadata,
    Column("log_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(32), nullable=False),  # a uuid4: unique without an index to say so
    Column("category", String(64), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("broadcast", Integer, nullable=False),
    # broadcasts only: a targeted entry (most of them) costs one index fewer to insert
    Index("log_entries_broadcasts", "log_offset", postgresql_where=text("broadcast = 1"),
          sqlite_where=text("broadcast = 1")),
    Index("log_entries_created", "created_at_us"),  # the age bound's cut
)

recipients = Table(
    "log_recipients",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("log_offset", BigInteger, primary_key=True, autoincrement=False),
    # the trimmer deletes a targeted entry once no recipient row refers to it
    Index("log_recipients_offset", "log_offset"),
)

streams = Table(
    "log_streams",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("since", BigInteger, nullable=False),  # the log's head when the stream began
    Column("acked", BigInteger, nullable=False),
    Column("trimmed", BigInteger, nullable=False),  # >= since; nothing at or below is left
    Column("epoch", Integer, nullable=False),
)

# Idempotency keys (``publish_keys``): a row exists exactly when its entry does.
publish_keys = Table(
    "publish_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of the body
    Column("log_offset", BigInteger, nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("recipients", Integer, nullable=False),
    Index("publish_keys_created", "created_at_us"),
)

control_events = Table(
    "control_events",
    metadata,
    # BIGSERIAL on PostgreSQL; INTEGER PRIMARY KEY AUTOINCREMENT on SQLite,
    # whose rowid alias only an INTEGER column becomes
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("type", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    sqlite_autoincrement=True,  # a seq is never reused, whatever happens
)
