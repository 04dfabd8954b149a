"""Test doubles for the parts the data path is built from; nothing here is used by a running gateway."""

from gateway.testing.upstream import MemoryAnswer, MemoryUpstream, Scripted, Sent

__all__ = ["MemoryAnswer", "MemoryUpstream", "Scripted", "Sent"]
