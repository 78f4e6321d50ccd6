"""The one base class of user mistakes: the CLI prints its one-line message and exits with status 2."""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix (a bad spec, a missing file, a misused command), said in one line."""
