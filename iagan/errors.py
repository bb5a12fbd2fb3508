"""User-facing errors: one plain sentence naming the problem and the fix, shown without a traceback."""


class UserError(Exception):
    """A mistake in the user's input or setup (bad parameter, missing file), not a bug in iagan."""
