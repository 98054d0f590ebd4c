"""Attacks of the threat model (docs/security.md), each reproduced against real servers."""
