"""User-facing errors: one plain sentence naming the problem and the fix, shown without a traceback."""


class UserError(Exception):
    """A mistake in the user's input or setup (bad parameter, missing file), not a bug in iagan."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its class name when it has none), for a one-line error."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:limit]
