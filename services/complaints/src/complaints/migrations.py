"""Tables of the complaints schema: policies, read models, callbacks, the worklist."""

from __future__ import annotations

from claimdesk.db import Migration

MIGRATIONS = [
    Migration(
        "complaints",
        1,
        "complaints_tables",
        """
        CREATE TABLE sla_policies (
            name text NOT NULL,
            version int NOT NULL,
            body jsonb NOT NULL,
            published_by text NOT NULL,
            published_at timestamptz NOT NULL,
            PRIMARY KEY (name, version)
        );
        CREATE TABLE complaints (
            complaint_id text PRIMARY KEY,
            case_id text,
            status text NOT NULL,
            owner text NOT NULL,
            assignee text,
            category text NOT NULL,
            severity text NOT NULL,
            channel text NOT NULL,
            level int NOT NULL DEFAULT 0,
            next_due_at timestamptz,
            callback_id text,
            received_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX complaints_status ON complaints (status, next_due_at);
        CREATE TABLE work_items (
            item_type text NOT NULL,
            item_id text NOT NULL,
            holder text NOT NULL,
            relation text NOT NULL,
            case_id text,
            complaint_id text,
            title text NOT NULL,
            due_at timestamptz,
            status text NOT NULL,
            level int NOT NULL DEFAULT 0,
            link text,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (item_type, item_id, holder)
        );
        CREATE INDEX work_items_holder ON work_items (holder, due_at);
        CREATE TABLE cases (
            case_id text PRIMARY KEY,
            insurer_code text,
            caller_name text,
            caller_phone text,
            plate text
        );
        CREATE TABLE callback_rates (
            insurer_code text PRIMARY KEY,
            rate double precision NOT NULL,
            set_by text NOT NULL,
            set_at timestamptz NOT NULL
        );
        CREATE TABLE callbacks (
            callback_id text PRIMARY KEY,
            version int NOT NULL,
            case_id text NOT NULL,
            job_id text,
            surveyor_id text,
            insurer_code text,
            owner text NOT NULL,
            status text NOT NULL,
            due_at timestamptz NOT NULL,
            attempts int NOT NULL DEFAULT 0,
            satisfaction int,
            surveyor_rating int,
            reasons jsonb NOT NULL DEFAULT '[]',
            last_reason text,
            complaint_id text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX callbacks_queue ON callbacks (status, due_at);
        CREATE TABLE consultations (
            consultation_id text PRIMARY KEY,
            case_id text,
            owner text NOT NULL,
            topic text NOT NULL,
            caller_name text,
            caller_phone text,
            due_at timestamptz,
            status text NOT NULL
        );
        CREATE TABLE form_submissions (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            client text NOT NULL,
            at timestamptz NOT NULL
        );
        CREATE INDEX form_submissions_client ON form_submissions (client, at);
        """,
    ),
    Migration(
        "complaints",
        2,
        "consultation_follow_up_owner",
        "ALTER TABLE consultations ADD COLUMN follow_up_owner text",
    ),
    Migration(
        "complaints",
        3,
        "idempotency_keys",
        """CREATE TABLE idempotency_keys (
               actor text NOT NULL,
               key text NOT NULL,
               complaint_id text NOT NULL,
               created_at timestamptz NOT NULL,
               PRIMARY KEY (actor, key)
           )""",
    ),
]
