"""Dispatch's own tables: the read model (surveyors, jobs, load) and its configuration."""

from __future__ import annotations

from claimdesk.db import Migration

MIGRATIONS = [
    Migration(
        "dispatch",
        1,
        "read_model",
        """
        CREATE TABLE surveyors (
            surveyor_id text PRIMARY KEY,
            name text NOT NULL,
            phone text NOT NULL,
            team text NOT NULL,
            skills text[] NOT NULL,
            regions text[] NOT NULL DEFAULT '{}',
            base_lat double precision NOT NULL,
            base_lon double precision NOT NULL,
            lat double precision NOT NULL,
            lon double precision NOT NULL,
            location_at timestamptz,
            capacity int NOT NULL,
            shifts jsonb NOT NULL DEFAULT '[]',
            available boolean NOT NULL DEFAULT true,
            availability_reason text NOT NULL DEFAULT '',
            shift_override boolean,
            retired boolean NOT NULL DEFAULT false,
            retired_reason text,
            registered_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX surveyors_team ON surveyors (team);
        CREATE TABLE jobs (
            job_id text PRIMARY KEY,
            case_id text NOT NULL UNIQUE,
            status text NOT NULL,
            surveyor_id text,
            team text,
            attempt int NOT NULL DEFAULT 0,
            insurer_code text NOT NULL,
            priority text NOT NULL DEFAULT 'normal',
            plate text,
            loss_type text NOT NULL,
            loss_address text NOT NULL,
            loss_lat double precision,
            loss_lon double precision,
            region text,
            required_skills text[] NOT NULL DEFAULT '{}',
            contact_name text,
            contact_phone text,
            description text NOT NULL DEFAULT '',
            ack_due_at timestamptz,
            queue_kind text,
            queue_reason text,
            call_the_team boolean NOT NULL DEFAULT false,
            assignment jsonb,
            opened_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX jobs_surveyor ON jobs (surveyor_id, status);
        CREATE INDEX jobs_status ON jobs (status);
        CREATE TABLE assignments (
            job_id text NOT NULL,
            attempt int NOT NULL,
            surveyor_id text NOT NULL,
            assigned_at timestamptz NOT NULL,
            PRIMARY KEY (job_id, attempt)
        );
        CREATE INDEX assignments_day ON assignments (assigned_at, surveyor_id);
        CREATE TABLE job_feed (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            surveyor_id text NOT NULL,
            job_id text NOT NULL,
            kind text NOT NULL,
            attempt int NOT NULL DEFAULT 0,
            at timestamptz NOT NULL,
            delivered_at timestamptz
        );
        CREATE INDEX job_feed_surveyor ON job_feed (surveyor_id, seq);
        CREATE TABLE dispatch_config (key text PRIMARY KEY, value jsonb NOT NULL);
        CREATE TABLE insurer_prefs (
            insurer_code text PRIMARY KEY,
            preferred_teams text[] NOT NULL DEFAULT '{}',
            preferred_surveyors text[] NOT NULL DEFAULT '{}',
            avoided_surveyors text[] NOT NULL DEFAULT '{}'
        );
        CREATE TABLE team_webhooks (
            team text PRIMARY KEY,
            url text NOT NULL,
            secret text NOT NULL
        );
        """,
    ),
    Migration(
        "dispatch",
        2,
        "load_counters",
        """
        ALTER TABLE surveyors ADD COLUMN open_jobs int NOT NULL DEFAULT 0;
        ALTER TABLE surveyors ADD COLUMN today_start timestamptz;
        ALTER TABLE surveyors ADD COLUMN assigned_today int NOT NULL DEFAULT 0;
        CREATE INDEX assignments_surveyor ON assignments (surveyor_id, assigned_at);
        UPDATE surveyors s SET open_jobs = (
            SELECT count(*) FROM jobs j WHERE j.surveyor_id = s.surveyor_id
              AND j.status IN ('assigned', 'acknowledged', 'en_route', 'arrived'));
        """,
    ),
    Migration(
        "dispatch",
        3,
        "roster_changes",
        """
        -- the transaction that last wrote each surveyor row, so a process can keep the roster
        -- in memory and re-read only the rows changed since its last read (dispatch.roster)
        ALTER TABLE surveyors ADD COLUMN changed_tx xid8 NOT NULL DEFAULT pg_current_xact_id();
        CREATE INDEX surveyors_changed_tx ON surveyors (changed_tx);
        CREATE FUNCTION surveyors_stamp_tx() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.changed_tx := pg_current_xact_id();
            RETURN NEW;
        END $$;
        CREATE TRIGGER surveyors_stamp_tx BEFORE INSERT OR UPDATE ON surveyors
            FOR EACH ROW EXECUTE FUNCTION surveyors_stamp_tx();
        """,
    ),
    Migration(
        "dispatch",
        4,
        "token_generation",
        """
        -- a surveyor's tokens of a lower generation are refused (SurveyorTokenRotated)
        ALTER TABLE surveyors ADD COLUMN token_generation int NOT NULL DEFAULT 0;
        """,
    ),
]
