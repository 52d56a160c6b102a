"""Intake's own tables, beside the event store: identity, the case read model, idempotency,
consultations, discrepancies, document checklists and webhook deliveries."""

from __future__ import annotations

from claimdesk.db import Migration

MIGRATIONS = [
    Migration(
        "intake",
        1,
        "intake_tables",
        """
        CREATE TABLE insurers (
            insurer_id text PRIMARY KEY,
            code text NOT NULL UNIQUE,
            name text NOT NULL,
            created_at timestamptz NOT NULL
        );
        CREATE TABLE api_keys (
            key_id text PRIMARY KEY,
            insurer_id text NOT NULL REFERENCES insurers,
            key_hash text NOT NULL UNIQUE,
            key_prefix text NOT NULL,
            created_at timestamptz NOT NULL,
            revoked_at timestamptz
        );
        CREATE TABLE staff (
            staff_id text PRIMARY KEY,
            number text NOT NULL UNIQUE,
            name text NOT NULL,
            role text NOT NULL,
            team text,
            created_at timestamptz NOT NULL,
            deactivated_at timestamptz
        );
        CREATE TABLE staff_tokens (
            token_id text PRIMARY KEY,
            staff_id text NOT NULL REFERENCES staff,
            issued_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz
        );
        CREATE INDEX staff_tokens_revoked ON staff_tokens (token_id) WHERE revoked_at IS NOT NULL;

        CREATE TABLE cases (
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            case_id text PRIMARY KEY,
            insurer_code text NOT NULL,
            channel text NOT NULL,
            report_no text,
            plate text,
            loss_time timestamptz NOT NULL,
            status text NOT NULL,
            owner text,
            version int NOT NULL,
            data jsonb NOT NULL,
            reported_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE UNIQUE INDEX cases_insurer_report_no ON cases (insurer_code, report_no)
            WHERE channel = 'insurer_api';
        CREATE INDEX cases_plate_time ON cases (plate, loss_time);
        CREATE INDEX cases_insurer_seq ON cases (insurer_code, seq);
        CREATE INDEX cases_status ON cases (status, seq);

        CREATE TABLE idempotency_keys (
            scope text NOT NULL,
            key text NOT NULL,
            request_hash text NOT NULL,
            case_id text NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (scope, key)
        );

        CREATE TABLE consultations (
            consultation_id text PRIMARY KEY,
            case_id text,
            agent text NOT NULL,
            owner text NOT NULL,
            data jsonb NOT NULL,
            logged_at timestamptz NOT NULL
        );

        CREATE TABLE discrepancies (
            discrepancy_id text PRIMARY KEY,
            case_id text NOT NULL,
            phone_case_id text NOT NULL,
            field text NOT NULL,
            phone_value jsonb,
            insurer_value jsonb,
            agent text,
            status text NOT NULL DEFAULT 'open',
            note text,
            resolved_by text,
            created_at timestamptz NOT NULL,
            resolved_at timestamptz
        );
        CREATE INDEX discrepancies_open ON discrepancies (status, created_at);

        CREATE TABLE document_checklists (
            insurer_code text NOT NULL,
            loss_type text NOT NULL,
            items jsonb NOT NULL,
            updated_at timestamptz NOT NULL,
            updated_by text NOT NULL,
            PRIMARY KEY (insurer_code, loss_type)
        );
        CREATE TABLE case_documents (
            case_id text NOT NULL,
            code text NOT NULL,
            name text NOT NULL,
            position int NOT NULL,
            requested_at timestamptz NOT NULL,
            received_at timestamptz,
            received_by text,
            PRIMARY KEY (case_id, code)
        );

        CREATE TABLE webhooks (
            webhook_id text PRIMARY KEY,
            insurer_code text NOT NULL,
            url text NOT NULL,
            events text[] NOT NULL,
            secret text NOT NULL,
            created_at timestamptz NOT NULL,
            deleted_at timestamptz
        );
        CREATE INDEX webhooks_insurer ON webhooks (insurer_code) WHERE deleted_at IS NULL;
        CREATE TABLE webhook_deliveries (
            delivery_id text PRIMARY KEY,
            webhook_id text NOT NULL REFERENCES webhooks,
            event_id uuid NOT NULL,
            event text NOT NULL,
            case_id text NOT NULL,
            body text NOT NULL,
            status text NOT NULL DEFAULT 'pending',
            attempts int NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            last_status_code int,
            last_error text,
            created_at timestamptz NOT NULL,
            delivered_at timestamptz,
            UNIQUE (webhook_id, event_id)
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
            WHERE status = 'pending';
        CREATE TABLE webhook_attempts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id text NOT NULL,
            attempt int NOT NULL,
            at timestamptz NOT NULL,
            status_code int,
            error text,
            duration_ms int NOT NULL
        );
        CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
        """,
    ),
    Migration(
        "intake",
        2,
        "cases_report_no_index",
        "CREATE INDEX cases_report_no ON cases (insurer_code, report_no);",
    ),
    Migration(
        "intake",
        3,
        "webhook_delivery_order",
        """
        ALTER TABLE webhook_deliveries ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
        CREATE INDEX webhook_deliveries_case_order ON webhook_deliveries (webhook_id, case_id, seq)
            WHERE status = 'pending';
        """,
    ),
]
