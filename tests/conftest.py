"""Every test starts in mmpretrain's default scope (mmfd's scope), whatever scope
an earlier test's Runner (mmdet, mmseg, mmengine) left behind."""
import pytest
from mmengine.registry import DefaultScope

import mmfd  # noqa: F401  (registers; safe globals for weights_only loading)


@pytest.fixture(autouse=True)
def mmpretrain_default_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield
