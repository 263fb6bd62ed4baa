"""Every error type of mlp-jax, in one place. Each is raised with a message that names what was expected
and what was given; the command line turns `UsageError` and the file errors into one line and exit 2."""


class UsageError(ValueError):
    """Bad user input to a command (a flag, a name, a file): reported as one line, exit code 2."""


class DerivativeError(ValueError):
    """A hand-written derivative that does not match ``jax.grad``: says where and by how much."""


class DataError(ValueError):
    """A data set that cannot be loaded; the message names what was expected and what was given."""


class NpzError(ValueError):
    """The archive is not a plain .npz of numeric arrays; the message says which member and why."""


class CheckpointError(ValueError):
    """A checkpoint cannot be written or does not match what the caller expected."""


class NonFiniteLoss(RuntimeError):
    """Training met a NaN or infinite loss; the message names the epoch and step (exit code 1)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM; the message says at which epoch and what checkpoint is kept
    (exit code 130). A KeyboardInterrupt, so code that catches Exception does not swallow it."""
