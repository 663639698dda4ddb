"""tools/analysis_tools/benchmark_fd.py runs at tiny size (its figures are not asserted: timing
belongs in the issue note, not in timed tests)."""
import json
import sys

from fd_fixtures import make_timm_vit_checkpoint, run_train


def test_benchmark_tool_runs_and_reports(tmp_path):
    teacher = make_timm_vit_checkpoint(tmp_path / 'teacher.pth')
    out = tmp_path / 'bench.json'
    result = run_train([
        sys.executable, 'tools/analysis_tools/benchmark_fd.py', 'tests/configs/tiny_fd.py',
        '--batch', '2', '--iters', '2', '--warmup', '1', '--repeats', '2', '--amp', '--flops',
        '--json',
        str(out), '--cfg-options', f'model.teacher.checkpoint={teacher}'
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in ('fd_ms', 'floor_ms', 'teacher_ms', 'fd_images_per_s', 'fd_over_floor',
                'teacher_share', 'flops_per_step'):
        assert report[key] > 0, key
    assert report['amp_dtype'] == 'bfloat16' and len(report['fd_over_floor_runs']) == 2
    assert 'FD / floor' in result.stdout


def test_benchmark_two_teachers(tmp_path):
    """The floor runs both teachers and both heads; random teacher weights (no file)."""
    out = tmp_path / 'bench2.json'
    result = run_train([
        sys.executable, 'tools/analysis_tools/benchmark_fd.py',
        'tests/configs/tiny_fd_two_teachers.py', '--batch', '2', '--iters', '1', '--warmup', '1',
        '--repeats', '1', '--json',
        str(out)
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['num_teachers'] == 2 and report['fd_ms'] > 0 and report['teacher_ms'] > 0
    assert 'random teacher weights' in result.stdout
