"""Resilience policies: timeouts, retries, circuit breakers, escalation, checkpoints and fallbacks."""
