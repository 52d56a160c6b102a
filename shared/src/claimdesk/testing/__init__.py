"""Test harness: real embedded Postgres and the real broker, unique names per test."""
