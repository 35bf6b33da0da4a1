"""The schema as ``create_all`` made it before there were migrations.

The tables are written out here rather than imported from
``service.adapters.tables``: a revision is what the schema was at that
revision, and ``tables`` moves on with the code.

Every step leaves what already exists alone (tables and indexes checked
first, ``CREATE OR REPLACE`` / ``IF NOT EXISTS`` triggers, the head row
inserted if missing): a database made by ``create_all`` has all of this and
no ``alembic_version``, and ``service.adapters.migrate`` adopts it by
checking its tables, then running this revision over it, which adds only
what a start that stopped half-way left out.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, text
from sqlalchemy.dialects import postgresql, sqlite

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

metadata = MetaData()

log_head = Table(
    "log_head", metadata,
    Column("id", Integer, primary_key=True),
    Column("head", BigInteger, nullable=False),
    Column("streams", BigInteger, nullable=False),
)
Table(
    "log_entries", metadata,
    Column("log_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(32), nullable=False),
    Column("category", String(64), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("broadcast", Integer, nullable=False),
    Index("log_entries_broadcasts", "log_offset", postgresql_where=text("broadcast = 1"),
          sqlite_where=text("broadcast = 1")),
    Index("log_entries_created", "created_at_us"),
)
Table(
    "log_recipients", metadata,
    Column("user_id", String(128), primary_key=True),
    Column("log_offset", BigInteger, primary_key=True, autoincrement=False),
    Index("log_recipients_offset", "log_offset"),
)
Table(
    "log_streams", metadata,
    Column("user_id", String(128), primary_key=True),
    Column("since", BigInteger, nullable=False),
    Column("acked", BigInteger, nullable=False),
    Column("trimmed", BigInteger, nullable=False),
    Column("epoch", Integer, nullable=False),
)
Table(
    "publish_keys", metadata,
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("log_offset", BigInteger, nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("recipients", Integer, nullable=False),
    Index("publish_keys_created", "created_at_us"),
)
Table(
    "control_events", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("type", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

# control_events is append-only: the database refuses UPDATE and DELETE (and
# TRUNCATE on PostgreSQL), so not even a hand-typed statement rewrites history
_PG_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION control_events_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'control_events is append-only: % refused', TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
    """CREATE OR REPLACE TRIGGER control_events_no_change
       BEFORE UPDATE OR DELETE ON control_events
       FOR EACH ROW EXECUTE FUNCTION control_events_append_only()""",
    """CREATE OR REPLACE TRIGGER control_events_no_truncate
       BEFORE TRUNCATE ON control_events
       FOR EACH STATEMENT EXECUTE FUNCTION control_events_append_only()""",
)
_SQLITE_TRIGGERS = tuple(
    f"""CREATE TRIGGER IF NOT EXISTS control_events_no_{op_name.lower()}
        BEFORE {op_name} ON control_events
        BEGIN SELECT RAISE(ABORT, 'control_events is append-only: {op_name} refused'); END"""
    for op_name in ("UPDATE", "DELETE"))


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    metadata.create_all(bind, checkfirst=True)
    for statement in _PG_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS:
        op.execute(text(statement))
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    op.execute(insert(log_head).values(id=1, head=0, streams=0).on_conflict_do_nothing())


def downgrade() -> None:
    bind = op.get_bind()
    metadata.drop_all(bind)
    if bind.dialect.name == "postgresql":
        op.execute(text("DROP FUNCTION IF EXISTS control_events_append_only()"))
