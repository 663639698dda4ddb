"""Data errors: one bad sample (recoverable) and too many of them (fatal)."""
from mmfd.utils.errors import MMFDError


class BadSampleError(MMFDError):
    """A sample cannot be loaded (missing, unreadable, truncated or undecodable file).

    ``SafeLoadImageFromFile`` records it and returns None (mmengine's dataset then
    fetches another sample), or raises it with ``skip_bad_samples=False``."""

    def __init__(self, path, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # survive the trip from a dataloader worker
        return BadSampleError, (self.path, self.reason)


class DataError(MMFDError):
    """The data is unusable: more bad samples than allowed, or no good sample left."""
