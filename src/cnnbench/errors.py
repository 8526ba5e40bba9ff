"""The one error type for mistakes a user can fix.

Anything raised as :class:`UserError` reaches the CLI, which prints its message as one line
(``cnnbench: error: <message>``) and exits with status 2, never with a traceback. The message
says what is wrong and how to fix it.
"""


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing/corrupt file, bad checkpoint)."""

    exit_code = 2
