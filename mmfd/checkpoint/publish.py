"""Content-addressed file names for published checkpoints.

Like mmpretrain's ``tools/model_converters/publish_model.py``: the first 8 hex
digits of the file's sha256 go into its name (``NAME-1a2b3c4d.pth``), so a
download can be checked against its name and two different files never share one.
"""
import hashlib
import os

HASH_DIGITS = 8


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def published_name(path: str, sha256: str) -> str:
    """``dir/NAME.ext`` -> ``dir/NAME-<first 8 hex digits>.ext``."""
    root, ext = os.path.splitext(path)
    return f'{root}-{sha256[:HASH_DIGITS]}{ext}'


def publish_checkpoint(path: str) -> str:
    """Renames ``path`` to its sha256-suffixed name; returns the new path."""
    target = published_name(path, sha256_of(path))
    os.replace(path, target)
    return target
