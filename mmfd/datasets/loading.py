"""``SafeLoadImageFromFile``: mmcv's LoadImageFromFile that refuses broken files.

mmcv's loader (cv2 backend) decodes a truncated JPEG into a partly grey image with
no error, fails on other broken files with a bare ``assert``, and a missing file
raises whatever the file backend raises. This transform checks the bytes first
(empty file; JPEG without its end-of-image marker after the last scan; PNG without
IEND after the last IDAT; GIF without trailer; BMP/WebP shorter than their header
says) and raises :class:`BadSampleError` with the path and the reason for every
failure, which ``RobustDataset`` turns into a logged substitution.
"""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio

from mmfd.registry import TRANSFORMS
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
    """LoadImageFromFile (same arguments) that raises BadSampleError(path, reason)
    for missing, unreadable, truncated or undecodable images.

    Args:
        check_truncation (bool): check the file's end markers before decoding
            (default True; decoders such as cv2 accept truncated JPEGs).
    """

    def __init__(self, *args, check_truncation: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_truncation = check_truncation

    def _read(self, filename) -> bytes:
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def transform(self, results: dict) -> Optional[dict]:
        try:
            return self._load(results)
        except BadSampleError:
            if self.ignore_empty:  # mmcv's option: None makes mmengine pick another
                return None
            raise

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
