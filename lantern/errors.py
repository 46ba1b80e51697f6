"""The one exception type that means "the user asked for something that cannot be done"."""


class LanternError(Exception):
    """A user-facing error: the command line prints its message on one line and exits 1."""


def require_positive(settings: object, *names: str) -> None:
    """Refuse, in one line naming the flag, the first of these settings that is not above zero."""
    for name in names:
        value = getattr(settings, name)
        if value <= 0:
            raise LanternError(f"--{name} must be positive (got {value})")
