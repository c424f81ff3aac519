"""The one base class for errors a user can fix (bad input, missing files).

The CLI turns a UserError into one line and exit status 2, and the pages into one
message; any other exception is a bug and keeps its traceback. It derives from
ValueError because every such error is a value the user gave (a setting, a name,
a file), so callers that already catch ValueError keep working.
"""


class UserError(ValueError):
    """Something the user can fix; the message says what and how."""
