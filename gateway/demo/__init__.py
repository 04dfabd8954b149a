"""The in-process demo pipeline behind ``agent-gateway demo``."""
