"""The project's error type: bad input becomes one clear line and exit status 2 (see `cli`)."""


class EznasError(Exception):
    """A problem the user can fix (bad input, missing data, bad config).

    The message is a single line that says what is wrong, where (file, key, value) and how
    to fix it. The CLI prints it as ``eznas: error: <message>`` and exits with status 2.
    """
