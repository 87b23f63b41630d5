"""Prefect tasks: thin, retry-safe wrappers over one library step each."""
