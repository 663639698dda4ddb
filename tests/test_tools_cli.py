"""mmfd's tools end a user error with its message, not a Python traceback."""
import subprocess
import sys

import pytest
from fd_fixtures import REPO


@pytest.mark.parametrize('debug', [False, True])
def test_missing_checkpoint_prints_the_message_and_exits_non_zero(tmp_path, debug):
    missing = tmp_path / 'missing_teacher.pth'
    cmd = [
        sys.executable, 'tools/train.py', 'tests/configs/tiny_fd.py', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', f'model.teacher.checkpoint={missing}',
        f'train_dataloader.dataset.data_root={tmp_path}'
    ] + (['--debug'] if debug else [])
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"model.teacher.checkpoint='{missing}': file not found" in result.stderr
    assert ('Traceback (most recent call last)' in result.stderr) is debug
    if not debug:  # the message, then how to get the traceback: nothing else
        lines = result.stderr.strip().splitlines()
        assert any(line.startswith('CheckpointError: model.teacher.checkpoint=') for line in lines)
        assert lines[-1] == '(set MMFD_DEBUG=1 or pass --debug for the traceback)'
