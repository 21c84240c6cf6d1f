"""Shared plumbing with no domain knowledge."""
