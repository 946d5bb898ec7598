"""The one exception type for mistakes a user can make (bad paths, flags, inputs).

The CLI prints it as a single line; library callers can catch it. Anything else that escapes is a
bug in koin-hf, not in the user's input.
"""


class KoinError(ValueError):
    """A user-facing error whose message names the file, flag or class at fault."""
