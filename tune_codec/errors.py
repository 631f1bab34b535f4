"""Every error a user can cause: the command lines print a UsageError as one line and exit 2; anything
else is a bug and keeps its traceback."""


class UsageError(ValueError):
    """An error the user caused (a bad flag, file, space or setting)."""


class ConfigError(UsageError):
    """A config value that is not allowed; the message names the field and what is allowed."""


class DataError(UsageError):
    """The audio cannot be used; the message says which file or setting and why."""


class SpaceError(UsageError):
    """A search space that cannot run; the message names the file, the key and what is allowed."""


class ScheduleError(UsageError):
    """A schedule file that cannot be replayed; the message names the file and the entry."""


class DoctorError(UsageError):
    """A source the doctor cannot read: the message names what was found and what is accepted."""
