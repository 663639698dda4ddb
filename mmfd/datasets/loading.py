"""``SafeLoadImageFromFile``: mmcv's LoadImageFromFile that survives broken files.

mmcv's loader (cv2 backend) decodes a truncated JPEG into a partly grey image with
no error, fails on other broken files with a bare ``assert``, and a missing file
raises whatever the file backend raises: one bad file out of a million ends a
multi-day run. This transform checks the bytes first (empty file; JPEG without its
end-of-image marker after the last scan; PNG without IEND after the last IDAT; GIF
without trailer; BMP/WebP shorter than their header says), and for every failure
returns None. mmengine's ``BaseDataset.__getitem__`` (train mode) then fetches
another index, up to the dataset's ``max_refetch`` times: no dataset wrapper is
needed, so the dataset config stays the plain one (``--cfg-options
train_dataloader.dataset.data_root=...`` works).

Each bad file is logged once (path, reason, "N/max bad samples allowed") and
counted in a :class:`BadSampleLedger` shared by all dataloader workers; more than
``max_bad_samples`` distinct bad files end the run with a :class:`DataError`
listing them. With ``skip_bad_samples=False`` (e.g. in a test pipeline, where
mmengine does not refetch) a bad file raises :class:`BadSampleError` naming it.
"""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio

from mmfd.registry import TRANSFORMS
from .bad_samples import BadSampleLedger
from .errors import BadSampleError


def image_bytes_problem(data: bytes) -> Optional[str]:
    """Why ``data`` is not a complete image file, or None when it looks complete."""
    if not data:
        return 'empty file (0 bytes)'
    if data[:3] == b'\xff\xd8\xff':  # JPEG: the scan data ends with EOI (FF D9)
        last_scan = data.rfind(b'\xff\xda')
        if last_scan < 0 or data.find(b'\xff\xd9', last_scan) < 0:
            return f'truncated JPEG ({len(data)} bytes, no end-of-image marker)'
    elif data[:8] == b'\x89PNG\r\n\x1a\n':
        if data.rfind(b'IEND') < data.rfind(b'IDAT'):
            return f'truncated PNG ({len(data)} bytes, no IEND chunk after the image data)'
    elif data[:6] in (b'GIF87a', b'GIF89a'):
        if not data.rstrip(b'\x00').endswith(b';'):
            return f'truncated GIF ({len(data)} bytes, no trailer)'
    elif data[:2] == b'BM' and len(data) >= 6:
        expected = int.from_bytes(data[2:6], 'little')
        if len(data) < expected:
            return f'truncated BMP ({len(data)} of {expected} bytes)'
    elif data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        expected = int.from_bytes(data[4:8], 'little') + 8
        if len(data) < expected:
            return f'truncated WebP ({len(data)} of {expected} bytes)'
    return None


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """LoadImageFromFile (same arguments) that skips missing, unreadable,
    truncated or undecodable images, up to a limit.

    Args:
        check_truncation (bool): check the file's end markers before decoding
            (default True; decoders such as cv2 accept truncated JPEGs).
        skip_bad_samples (bool): return None for a bad file, so that mmengine's
            dataset substitutes another sample (default True). False raises
            :class:`BadSampleError` (path and reason) instead.
        max_bad_samples (int): distinct bad files tolerated per training process
            (all its dataloader workers together); one more raises a
            :class:`DataError` listing them. Default 100.
    """

    def __init__(self,
                 *args,
                 check_truncation: bool = True,
                 skip_bad_samples: bool = True,
                 max_bad_samples: int = 100,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.check_truncation = check_truncation
        self.skip_bad_samples = skip_bad_samples
        # Built here, with the dataset, in the process that later starts the
        # dataloader workers: they all share it (see BadSampleLedger).
        self.ledger = BadSampleLedger(max_bad_samples)

    @property
    def max_bad_samples(self) -> int:
        return self.ledger.max_bad_samples

    def bad_indices(self) -> np.ndarray:
        """Dataset indices of the distinct bad files met so far (all workers)."""
        return self.ledger.indices()

    def _read(self, filename) -> bytes:
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def transform(self, results: dict) -> Optional[dict]:
        if self.skip_bad_samples and self.ledger.is_known(results['img_path']):
            return None  # found bad before (maybe by another worker): not read again
        try:
            return self._load(results)
        except BadSampleError as err:
            if self.skip_bad_samples:
                self.ledger.record(err, results.get('sample_idx'))  # DataError past the cap
                return None  # mmengine's BaseDataset fetches another index
            if self.ignore_empty:  # mmcv's option: None makes mmengine pick another
                return None
            raise

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, check_truncation={self.check_truncation}, '
                f'skip_bad_samples={self.skip_bad_samples}, '
                f'max_bad_samples={self.max_bad_samples})')

    def _load(self, results: dict) -> dict:
        filename = results['img_path']
        try:
            data = self._read(filename)
        except FileNotFoundError:
            raise BadSampleError(filename, 'file not found') from None
        except OSError as err:
            raise BadSampleError(filename, f'cannot read: {err}') from None
        problem = image_bytes_problem(data) if self.check_truncation else (
            None if data else 'empty file (0 bytes)')
        if problem:
            raise BadSampleError(filename, problem)
        try:
            img = mmcv.imfrombytes(data, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as err:  # decoders raise their own types
            raise BadSampleError(filename, f'cannot decode: {type(err).__name__}: '
                                 f'{err}') from None
        if img is None or img.size == 0:
            raise BadSampleError(
                filename, 'cannot decode (not an image, or corrupt '
                f'data; {len(data)} bytes)')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
