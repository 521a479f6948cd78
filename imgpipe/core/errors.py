"""User-facing errors.

Anything a user can fix (config, inputs, data handler) raises :class:`ImgpipeError`.
The CLI prints its message as one line and exits with status 2, never a traceback.
"""


class ImgpipeError(Exception):
    """A mistake in the user's input, reported as one clear line (exit status 2)."""


class BadValue(ValueError):
    """A config value that does not fit its key; the message says what is expected."""


class ConfigError(ImgpipeError):
    """Invalid imgpipe config file."""


class WSCleanNotFound(ConfigError):
    """The configured WSClean executable cannot be run on this machine."""


class DataHandlerError(ImgpipeError):
    """Invalid data handler file or a pattern that resolves to nothing."""


class InputError(ImgpipeError):
    """A Measurement Set or command-line input that cannot be used."""


class NodeError(ImgpipeError):
    """A node that cannot be reached (SSH) at the start of a run."""


class NoData(DataHandlerError):
    """Nothing to image yet: a pattern matches no obs_id (a quiet night, not a mistake,
    for a scheduled run; the command line still reports it as bad input)."""


class Interrupted(KeyboardInterrupt):
    """The command line was sent SIGINT (Ctrl-C) or SIGTERM: the run stops (its jobs say which)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name

    @property
    def who(self) -> str:
        """What stopped the run, as its jobs' reasons say: ``Ctrl-C``, ``SIGTERM to imgpipe``."""
        return "Ctrl-C" if self.signal_name == "SIGINT" else f"{self.signal_name} to imgpipe"
