"""The one base class for errors that are the user's input, not a bug.

The CLI prints these as a single line and exits with status 2, with no traceback.
"""


class VcamError(Exception):
    """A problem with a file, an option, a device or a setting; the message says which and what to do."""
