"""Error types shared across modules."""


class UsageError(ValueError):
    """Bad user input to a command (a flag, a name, a file): reported as one line, exit code 2."""
