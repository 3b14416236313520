"""The one error type a user can cause.

Anything the user can get wrong (a path, a field, a value) raises :class:`SsmscopeError` with a
message that names the file, line or field and says what would fix it. The CLI prints it as one
line and exits with status 2; everything else is a bug and keeps its traceback.
"""


class SsmscopeError(Exception):
    """A problem with the user's input or settings, explained in one line."""
