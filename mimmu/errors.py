"""The exception type for invalid input that the CLI reports as a one-line error."""


class MimmuError(Exception):
    """Invalid input or state, with a message that names the value and the fix."""
