"""Transactional outbox: write messages in the business transaction, relay them to a broker.

    from mqkit import outbox
    outbox.add(session, "orders", order, key=order.customer_id)   # in your transaction

    relay = outbox.OutboxRelay(db_url, broker)                      # or `mqkit outbox relay`
    await relay.run()

Needs the `sql` extra (SQLAlchemy, psycopg, aiosqlite). See README "Outbox or half messages".
"""

from mqkit.outbox.relay import OutboxRelay
from mqkit.outbox.schema import create_sql, outbox
from mqkit.outbox.status import OutboxStatus, outbox_status
from mqkit.outbox.writer import add

__all__ = ["OutboxRelay", "OutboxStatus", "add", "create_sql", "outbox", "outbox_status"]
