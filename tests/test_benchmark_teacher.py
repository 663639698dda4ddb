"""tools/analysis_tools/benchmark_teacher.py on a tiny timm teacher: one timed forward, every figure
reported and positive."""
import importlib.util
import json
import os

import pytest

TOOL = os.path.join(
    os.path.dirname(__file__), '..', 'tools', 'analysis_tools', 'benchmark_teacher.py')
TINY = dict(
    type='TimmTeacher',
    model='vit_base_patch14_reg4_dinov2',
    model_kwargs=dict(depth=1, embed_dim=32, num_heads=2))


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('benchmark_teacher', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_names_the_options(tool, capsys):
    with pytest.raises(SystemExit) as info:
        tool.parse_args(['--help'])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    for option in ('--teacher', '--img-size', '--batch', '--iters', '--device', '--json'):
        assert option in usage
    assert 'dinov2_vitl14' in usage  # the presets are listed


def test_one_iteration_reports_every_figure(tool, tmp_path, capsys):
    out = tmp_path / 'teacher.json'
    result = tool.main([
        '--teacher',
        json.dumps(TINY), '--img-size', '28', '--batch', '2', '--iters', '1', '--warmup', '0',
        '--device', 'cpu', '--json',
        str(out)
    ])
    printed = capsys.readouterr().out
    assert 'ms/image' in printed and 'peak' in printed
    assert json.loads(printed.strip().splitlines()[-1]) == json.loads(json.dumps(result))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for key in ('ms_per_image', 'ms_per_forward', 'images_per_s', 'peak_bytes', 'params',
                'param_bytes', 'build_s'):
        assert result[key] > 0, key
    assert result['peak_over_start_bytes'] >= 0
    assert result['ms_per_forward'] == pytest.approx(2 * result['ms_per_image'])
    # CLS + a 2x2 grid: the registers are not in the teacher's target
    assert (result['tokens'], result['embed_dim'], result['img_size']) == (5, 32, 28)
    assert result['memory_method'] in ('VmHWM', 'ru_maxrss') and result['device'] == 'cpu'


def test_bad_teacher_spec(tool):
    with pytest.raises(SystemExit, match='neither a preset'):
        tool.main(['--teacher', 'dinov9_huge', '--device', 'cpu'])
