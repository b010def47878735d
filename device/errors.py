"""The two kinds of failure the CLI and the daemon tell apart."""


class PortraitError(Exception):
    """Internal failure: exit code 1."""

    exit_code = 1


class BadInput(PortraitError):
    """The user's input is wrong (a file, a value): exit code 2.

    The message names the input and says what is wrong with it.
    """

    exit_code = 2
