"""agent-gateway: a sidecar HTTP proxy that enforces contracts on every handoff between AI agents."""

__version__ = "0.1.0"
