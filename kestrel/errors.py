"""The two kinds of failure every Kestrel program reports: bad input (exit 2) and runtime (exit 1)."""


class KestrelError(Exception):
    """A failure with a one-line message meant for the admin."""

    exit_code = 1


class InputError(KestrelError):
    """Bad input: a config file, a name, a MAC, a lease line, a command-line value. Nothing was changed."""

    exit_code = 2


class CommandError(KestrelError):
    """A subprocess failed; the message names the command and how it failed."""

    exit_code = 1
