"""Errors with messages a user can act on. Every raise names the file, key or
option that is wrong and, where possible, what to do about it."""


class MMFDError(RuntimeError):
    """Base class of mmfd's user-facing errors."""


class CheckpointError(MMFDError):
    """A checkpoint file is missing, unreadable, unsafe or does not fit the model."""


class ConfigError(MMFDError, ValueError):
    """A config option is invalid (unknown name, widths/grids that cannot align...)."""
