"""The tables of the event tests' throwaway databases (light to import: the worker subprocesses
use them too).

The outbox, a consumer's dedupe record, and `applied`, one row per effect a test consumer
applied (no unique key, so an effect applied twice shows as two rows)."""

from __future__ import annotations

from sqlalchemy import Column, Identity, Integer, MetaData, String, Table, Uuid
from taskflow_kit.outbox import outbox_table
from taskflow_kit.processed import processed_event_table

METADATA = MetaData()
OUTBOX = outbox_table(METADATA)
PROCESSED = processed_event_table(METADATA)
APPLIED = Table(
    "applied",
    METADATA,
    Column("id", Integer, Identity(), primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
)
