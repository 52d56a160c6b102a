"""ClaimDesk shared package: what every service stands on."""

CONTEXTS = ("intake", "dispatch", "complaints")
"""Bounded contexts that publish events, one Kafka topic each (analytics only reads)."""

SERVICES = ("intake", "dispatch", "complaints", "analytics")
