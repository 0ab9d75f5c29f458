"""One exception type for every problem a user can fix: the CLI prints it as one line and exits non-zero."""


class CsrefinerError(Exception):
    """A user-facing error: the message names the file, the problem and the fix."""
