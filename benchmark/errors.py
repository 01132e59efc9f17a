"""The one exception type for problems a user can cause and fix (bad path, override or image)."""


class BenchmarkError(Exception):
    """A user-fixable problem; the message names the bad thing and the fix.

    Entry points print it as one line and exit with status 2 (no traceback unless `debug=true`).
    """
