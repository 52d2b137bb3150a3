"""The one exception type that the CLI turns into a single clear line and a non-zero exit."""


class FaceganError(Exception):
    """A user-facing error: the message says what was wrong and what to do about it."""
