from .errors import CheckpointError, ConfigError, MMFDError

__all__ = ['MMFDError', 'CheckpointError', 'ConfigError']
