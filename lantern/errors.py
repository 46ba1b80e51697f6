"""The one exception type that means "the user asked for something that cannot be done"."""


class LanternError(Exception):
    """A user-facing error: the command line prints its message on one line and exits 1."""
