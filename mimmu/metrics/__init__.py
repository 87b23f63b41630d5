"""Metrics of an erasure, one family per module; definitions follow docs/method.md."""
