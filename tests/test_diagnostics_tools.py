"""tools/analysis_tools/analyze_attention.py and loss_landscape.py on tiny mmengine
checkpoints."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diagnostics_fixtures import (build, classifier_cfg, fd_cfg, make_image_folder, randomize_,
                                  save_mmengine_checkpoint)
from PIL import Image

from mmfd.diagnostics import (AttentionRecorder, analysis, attention_distance, distance_spread,
                              head_kl, head_similarity, make_loss_fn, resolve_geometry)
from mmfd.diagnostics.loading import load_model
from mmfd.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def tool(name):
    path = REPO / 'tools' / 'analysis_tools' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('diag_tools')
    images = make_image_folder(root / 'images', n=6)
    cls_model = randomize_(build(classifier_cfg()), scale=0.1)
    fd_model = randomize_(build(fd_cfg()), scale=0.1)
    return dict(
        images=images,
        cls=save_mmengine_checkpoint(cls_model, classifier_cfg(), root / 'cls.pth'),
        fd=save_mmengine_checkpoint(fd_model, fd_cfg(), root / 'fd.pth'))


def expected_numbers(checkpoint, which, images, num_images):
    """The metrics straight from the functions, on one batch of all images."""
    torch.manual_seed(0)  # the tool's --seed default: same random-init teacher
    model, _ = load_model(str(checkpoint))
    target = analysis.select_targets(model, [which], strict=True)[0]
    raw = analysis.load_image_folder(images, num_images, 32)
    with torch.no_grad(), AttentionRecorder(target.module) as rec:
        target.run(raw)
    layers = []
    for r in rec.records:
        geo = resolve_geometry(r)
        d = attention_distance(r.attn, geo.grid, geo.stride, geo.num_prefix_tokens)
        layers.append(
            dict(
                distance=d.numpy(),
                spread=distance_spread(d),
                sim=head_similarity(r.attn, geo.num_prefix_tokens),
                kl=head_kl(r.attn, geo.num_prefix_tokens),
                geo=geo))
    return layers


def test_analyze_attention_writes_pngs_and_json_matching_the_functions(files, tmp_path):
    out = tmp_path / 'out'
    tool('analyze_attention').main([
        str(files['cls']),
        str(files['fd']),
        str(files['fd']), '--model', 'student', 'student', 'teacher', '--images',
        str(files['images']), '--out',
        str(out), '--num-images', '5', '--batch-size', '2'
    ])
    for name in ('attention_distance', 'head_diversity', 'attention_maps_0', 'attention_maps_1',
                 'attention_maps_2'):
        with Image.open(out / f'{name}.png') as png:
            assert min(png.size) > 100
    report = json.loads((out / 'attention.json').read_text())
    models = report['models']
    assert list(models) == ['cls/student', 'fd/student', 'fd/teacher']
    for label, checkpoint, which in (('cls/student', files['cls'],
                                      'student'), ('fd/student', files['fd'], 'student'),
                                     ('fd/teacher', files['fd'], 'teacher')):
        entry = models[label]
        assert entry['num_images'] == 5 and entry['num_layers'] == 2
        expected = expected_numbers(checkpoint, which, files['images'], 5)
        for layer, exp in zip(entry['layers'], expected):
            assert layer['grid'] == list(exp['geo'].grid)
            assert layer['num_prefix_tokens'] == exp['geo'].num_prefix_tokens == 1
            np.testing.assert_allclose(layer['distance'], exp['distance'], rtol=1e-5)
            # a std of near-equal fp32 distances: compare on the distances' scale
            assert layer['distance_spread'] == pytest.approx(
                exp['spread'], rel=1e-4, abs=1e-5 * layer['distance_mean'])
            assert layer['head_similarity'] == pytest.approx(exp['sim'], rel=1e-5)
            assert layer['head_kl'] == pytest.approx(exp['kl'], rel=1e-4)
        assert entry['distance_per_head'] == [layer['distance'] for layer in entry['layers']]
    assert models['fd/teacher']['layers'][0]['num_heads'] == 3


def test_analyze_attention_options(files, tmp_path):
    analyze = tool('analyze_attention')
    with pytest.raises(ConfigError, match='no teacher'):
        analyze.main([
            str(files['cls']), '--model', 'teacher', '--images',
            str(files['images']), '--out',
            str(tmp_path)
        ])
    # --cfg-options reach the rebuilt model (e.g. a local teacher checkpoint path)
    results = analyze.main([
        str(files['fd']), '--model', 'teacher', '--images',
        str(files['images']), '--out',
        str(tmp_path), '--num-images', '2', '--no-kl', '--cfg-options',
        'model.teacher.arch.num_heads=2'
    ])
    layer = results['fd/teacher']['layers'][0]
    assert layer['num_heads'] == 2 and 'head_kl' not in layer


def test_loss_landscape_tool(files, tmp_path):
    landscape = tool('loss_landscape')
    out = tmp_path / 'ls'
    landscape.main([
        str(files['fd']), '--images',
        str(files['images']), '--out',
        str(out), '--points', '5', '--num-images', '4', '--batch-size', '2'
    ])
    assert (out / 'landscape_1d.png').stat().st_size > 1000
    result = json.loads((out / 'landscape.json').read_text())['models']['fd/model']
    assert result['alphas'] == pytest.approx([-1, -0.5, 0, 0.5, 1])
    # the centre is the unperturbed FD loss on the same fixed batches
    torch.manual_seed(0)
    model, _ = load_model(str(files['fd']))
    raw = analysis.load_image_folder(files['images'], 4, 32)
    loss = make_loss_fn(model, analysis.batches_from_images(model, raw, 2))()
    assert result['losses'][2] == pytest.approx(loss, rel=1e-6)
    assert set(result['sharpness']) == {'curvature', 'rise', 'radius', 'loss_at_0'}

    landscape.main([
        str(files['fd']), '--images',
        str(files['images']), '--out',
        str(out), '--points', '3', '--dim', '2', '--num-images', '4'
    ])
    surface = json.loads((out / 'landscape.json').read_text())['models']['fd/model']
    assert np.asarray(surface['losses']).shape == (3, 3)
    assert surface['losses'][1][1] == pytest.approx(loss, rel=1e-6)
    assert (out / 'landscape_2d.png').exists()

    with pytest.raises(ConfigError, match='labelled'):  # a classifier needs labels
        landscape.main([
            str(files['cls']), '--images',
            str(files['images']), '--out',
            str(out), '--points', '3'
        ])


def test_load_model_uses_the_top_level_data_preprocessor(tmp_path):
    """Configs in the mm convention declare data_preprocessor at top level."""
    from mmengine.config import Config

    from mmfd.diagnostics.loading import load_model
    cfg = Config.fromfile('configs/fd/fd_deit-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py')
    assert 'data_preprocessor' not in cfg.model
    path = tmp_path / 'cfg.py'
    cfg.model.teacher.update(checkpoint=None, allow_random_init=True)
    cfg.dump(str(path))
    loaded = load_model(str(path))
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    pre = model.data_preprocessor
    assert pre._enable_normalize
    assert pre.mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])
