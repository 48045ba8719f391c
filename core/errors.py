"""User-facing errors: each message says what went wrong and what to do."""


class M3Error(Exception):
    """An error the user can fix; the CLI prints it without a traceback, the plugin shows it."""


class InputError(M3Error):
    """Bad input data: a file, a column, a CRS, a region."""


class ModelMismatchError(M3Error):
    """A model file does not fit the stack it is applied to."""


class SetupError(M3Error):
    """A library the task needs is not installed."""


class WriteError(M3Error):
    """An output could not be written (full disk, quota, I/O error); nothing half-written was kept."""


class Cancelled(M3Error):
    """The user cancelled long work; nothing was written."""
