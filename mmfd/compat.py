"""Make mmengine checkpoints loadable with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls
``torch.load`` without that argument, so resuming fails on the few non-tensor
objects mmengine itself writes into a checkpoint (the message hub's HistoryBuffer
and the numpy arrays/scalars inside it). We allow-list exactly those classes;
``weights_only`` stays on, so a checkpoint from the internet still cannot run code.

One more object needs care: ``HistoryBuffer.__getstate__`` pickles its registry of
statistics methods as ``getattr(HistoryBuffer, 'mean')`` etc. Allow-listing
``builtins.getattr`` would let a malicious pickle reach any attribute of any
allowed class (``ndarray.tofile`` writes files), so instead HistoryBuffer no longer
writes that registry: the methods are registered by code at import time anyway.
"""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def _numpy_globals():
    """The numpy objects a pickled ndarray / numpy scalar refers to. Pickles name
    them by the module path of the numpy that wrote them (numpy.core in 1.x,
    numpy._core in 2.x), so both spellings are listed."""
    from numpy._core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSO']
    # bytes: an empty array pickles its (empty) buffer as builtins.bytes.
    entries = [np.ndarray, np.dtype, bytes] + dtype_classes
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries += [(_reconstruct, f'{module}._reconstruct'), (scalar, f'{module}.scalar')]
    return entries


MMENGINE_CHECKPOINT_GLOBALS = [HistoryBuffer] + _numpy_globals()


def _history_buffer_getstate(self):
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _history_buffer_setstate(self, state):
    state = dict(state)
    state.pop('statistics_methods', None)
    self.__dict__.update(state)
    for name in ('min', 'max', 'current', 'mean'):
        HistoryBuffer._statistics_methods.setdefault(name, getattr(HistoryBuffer, name))


def install_safe_globals():
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)


install_safe_globals()
