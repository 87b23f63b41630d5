"""Prefect flows that chain the tasks of `tasks/` into mimmu's lifecycle."""
