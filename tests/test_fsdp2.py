"""FSDP2Strategy on CPU (gloo, tools/dist_train.sh): sharded FD equals one process on
the concatenated batch, survives SIGKILLs (mid-run and mid-save) bit for bit, holds
1/N of the student per rank, reshards on resume, and consolidates into the single
file the converters and downstream configs read."""
import importlib.util
import math
import shutil
import socket

import pytest
import torch
from config_names import fd_config
from fd_fixtures import make_image_folder, make_timm_vit_checkpoint
from fsdp_fixtures import read_ranks
from reliability_fixtures import REPO, assert_bitwise_equal, run, run_until

from mmfd.engine.strategies import FSDP2Strategy, consolidate, verify_sharded_checkpoint
from mmfd.engine.strategies.sharded_checkpoint import read_full_state
from mmfd.utils.errors import CheckpointError, ConfigError

COMMON = """
custom_imports = dict(imports=['mmfd', 'fsdp_fixtures', 'reliability_fixtures'],
                      allow_failed_imports=False)
model = dict(teacher=dict(checkpoint='{teacher}'))
train_dataloader = dict(dataset=dict(data_root='{images}'))
optim_wrapper = dict(_delete_=True, type='FDOptimWrapper', amp='off',
                     clip_grad=dict(max_norm=1.0),  # clipped every step: a global norm
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=2,
                                     by_epoch=False, max_keep_ckpts=3))
custom_hooks = [dict(type='RankRecordHook'), dict(type='PauseForKillHook')]
"""
# No randomness (fixed resize, no shuffle, no drop path): one process on a batch of
# 8 and two ranks on 4 each must reach the same weights.
DETERMINISTIC = "_base_ = ['{repo}/tests/configs/tiny_fd_deterministic.py']\n" + COMMON
SHARDED = "runner_type = 'FlexibleRunner'\nstrategy = dict(type='FSDP2Strategy')\n"
# The settings users run: random crops and flips, shuffling, drop path 0.1; here with
# the teacher sharded too and every block recomputed in the backward.
RANDOM = ("_base_ = ['{repo}/tests/configs/tiny_fd.py']\n" + COMMON +
          "runner_type = 'FlexibleRunner'\nstrategy = dict(type='FSDP2Strategy', "
          "shard_teacher=True, activation_checkpointing=True)\n")


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def dist(config, work, ranks=2, resume=False, options=()):
    cmd = ['bash', 'tools/dist_train.sh', str(config), str(ranks), '--work-dir', str(work)]
    return cmd + (['--resume'] if resume else []) + (['--cfg-options', *options] if options else [])


def dist_run(*args, env=None, **kwargs):
    result = run(dist(*args, **kwargs), env=dict(env or {}, PORT=_free_port()), timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    return log


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('fsdp2')
    images = make_image_folder(root / 'images', n=32)
    teacher = make_timm_vit_checkpoint(root / 'teacher.pth')
    configs = {}
    # Iteration 3 is non-finite: for the whole batch in one process, on rank 1's half
    # only when sharded. Every rank must skip that step (or the shards diverge).
    nan_everywhere = "custom_hooks.append(dict(type='NaNInjectionHook', iters=[2]))\n"
    nan_on_rank1 = "custom_hooks.append(dict(type='NaNInjectionHook', iters=[2], ranks=[1]))\n"
    texts = dict(
        single=DETERMINISTIC + nan_everywhere,
        sharded=DETERMINISTIC + SHARDED + nan_on_rank1,
        random=RANDOM)
    for name, text in texts.items():
        configs[name] = root / f'{name}.py'
        configs[name].write_text(text.format(repo=REPO, images=images, teacher=teacher))
    return root, configs


def tool(path):
    """tools/<path>.py as a module, to call its main() in this process."""
    name = path.replace('/', '_')
    spec = importlib.util.spec_from_file_location(f'mmfd_tool_{name}', REPO / f'tools/{path}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def single(setup):
    """One process, batch 8 (tools/train.py in this process)."""
    root, configs = setup
    tool('train').main([
        str(configs['single']), '--work-dir',
        str(root / 'single'), '--cfg-options', 'train_dataloader.batch_size=8'
    ])
    return root / 'single'


@pytest.fixture(scope='module')
def sharded(setup):
    """Two ranks, batch 4 each, teacher replicated."""
    root, configs = setup
    log = dist_run(configs['sharded'], root / 'sharded')
    assert 'FSDP2: 2 student blocks + root sharded over 2 ranks; teacher(s) replicated' in log
    assert 'Non-finite update at iteration 3' in log  # rank 0's own half was finite
    return root / 'sharded'


@pytest.fixture(scope='module')
def sharded_teacher(setup):
    """The same, with the teacher sharded too and every student block recomputed."""
    root, configs = setup
    log = dist_run(
        configs['sharded'],
        root / 'sharded_teacher',
        options=['strategy.shard_teacher=True', 'strategy.activation_checkpointing=True'])
    assert 'teacher(s) sharded per block' in log and 'activation checkpointing on' in log
    return root / 'sharded_teacher'


def assert_equals_one_process(single, work):
    """Every student tensor within 1e-5; each step's whole-batch loss = the mean of
    the two ranks' losses (equal halves)."""
    reference = torch.load(single / 'iter_6.pth', weights_only=True)['state_dict']
    got, _ = read_full_state(str(work / 'iter_6.pth'))
    assert set(got) == set(reference) and not any('teacher' in k for k in got)
    for key, value in reference.items():
        assert got[key].shape == value.shape, key
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-5, msg=key)
    one = read_ranks(single, 1)[0]['losses']
    ranks = read_ranks(work, 2)
    assert {record['block_dtype'] for record in ranks} == {'torch.float32'}
    assert sorted(one) == list(range(1, 7))
    assert math.isnan(one.pop(3)) and math.isnan(ranks[1]['losses'][3])
    for step, loss in one.items():
        mean = (ranks[0]['losses'][step] + ranks[1]['losses'][step]) / 2
        assert abs(mean - loss) < 1e-5, (step, mean, loss)
        assert ranks[0]['losses'][step] != ranks[1]['losses'][step]  # really two halves


def test_sharded_teacher_and_recomputed_blocks_equal_one_process(single, sharded_teacher):
    assert_equals_one_process(single, sharded_teacher)
    full = read_ranks(single, 1)[0]['memory']['frozen_params']
    teacher = [record['memory']['frozen_params'] for record in read_ranks(sharded_teacher, 2)]
    assert sum(teacher) == full and max(teacher) <= 0.51 * full  # half the teacher per rank


def test_two_ranks_equal_one_process_on_the_concatenated_batch(single, sharded, tmp_path, capsys):
    """Teacher replicated; then the consolidated checkpoint through the converter
    into the fine-tuning backbone."""
    assert_equals_one_process(single, sharded)

    # Consolidated -> convert_fd_checkpoint -> the downstream backbone: the file reads
    # like DDP's, and the student loads tensor-equal.
    out = tmp_path / 'consolidated.pth'
    consolidate = tool('model_converters/consolidate_fsdp_checkpoint')
    consolidate.main([str(sharded / 'iter_6.pth'), str(out)])
    assert 'from 2 ranks, iteration 6' in capsys.readouterr().out
    written = torch.load(out, weights_only=True)
    assert set(written) >= {'meta', 'state_dict', 'message_hub'} and written['meta']['iter'] == 6
    from mmfd.checkpoint.fd_to_backbone import convert_fd_checkpoint
    for name, source in (('fsdp2', out), ('ddp', single / 'iter_6.pth')):
        convert_fd_checkpoint(source, tmp_path / f'{name}_backbone.pth', target='mmpretrain')
    a = torch.load(tmp_path / 'fsdp2_backbone.pth', weights_only=True)['state_dict']
    b = torch.load(tmp_path / 'ddp_backbone.pth', weights_only=True)['state_dict']
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
    from mmpretrain.registry import MODELS
    backbone = MODELS.build(
        dict(
            type='mmpretrain.BEiTViT',
            arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
            img_size=64,
            patch_size=16,
            use_abs_pos_emb=False,
            use_rel_pos_bias=True,
            use_shared_rel_pos_bias=False,
            layer_scale_init_value=0.1,
            bias='qv_bias',
            final_norm=False,
            out_type='featmap',
            layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None)),
            init_cfg=dict(
                type='StrictPretrained',
                checkpoint=str(out),
                convert='fd_vit',
                ignore_unexpected=[r'^ln1\.'])))
    backbone.init_weights()
    loaded = backbone.state_dict()
    for key, value in a.items():
        key = key[len('backbone.'):]
        if key in loaded:
            assert torch.equal(loaded[key], value), key
    # The sharded directory itself, as downstream configs name the FD checkpoint.
    backbone.init_cfg = dict(backbone.init_cfg, checkpoint=str(sharded / 'iter_6.pth'))
    backbone._is_init = False
    with torch.no_grad():
        for p in backbone.parameters():
            p.zero_()
    backbone.init_weights()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, loaded[key]), key


def test_each_rank_holds_half_of_the_student(single, sharded):
    """Per-rank bytes of the student's parameters and AdamW state, from the local
    shards: 1 rank holds everything, each of 2 ranks half (dim-0 shards of odd-sized
    tensors differ by a row), together exactly everything."""
    full = read_ranks(single, 1)[0]['memory']
    ranks = [record['memory'] for record in read_ranks(sharded, 2)]
    for part in ('trainable_params', 'optimizer_state'):
        assert sum(held[part] for held in ranks) == full[part], part
        assert max(held[part] for held in ranks) <= 0.51 * full[part], part
    for held in ranks:  # the replicated teacher: all of it on every rank
        assert held['frozen_params'] == full['frozen_params']


def test_sigkill_mid_save_then_resume_bitwise(setup, tmp_path):
    """Uninterrupted vs killed in the middle of training, at its worst moment: every
    shard of iter_4 written, the save not yet published. The resumed run starts from
    iter_2 (data position, random states, optimizer) and ends bit for bit equal.
    Teacher sharded, activation checkpointing, drop path and augmentation on."""
    _, configs = setup
    config = configs['random']
    reference = tmp_path / 'reference'
    log = dist_run(config, reference)
    assert 'teacher(s) sharded per block' in log and 'activation checkpointing on' in log

    work = tmp_path / 'killed'
    run_until(
        dist(config, work),
        'MMFD_TEST_FAULT_REACHED before_commit',
        env={
            'PORT': _free_port(),
            'MMFD_TEST_FAULT': 'before_commit:iter_4.pth'
        })
    assert verify_sharded_checkpoint(str(work / 'iter_2.pth')) is None
    assert not (work / 'iter_4.pth').exists()
    assert any(p.name.startswith('.iter_4.pth.tmp-') for p in work.iterdir())
    assert (work / 'last_checkpoint').read_text().endswith('iter_2.pth')

    log = dist_run(config, work, resume=True)
    assert 'Resume checkpoint from' in log and 'iter_2.pth' in log
    assert 'partial checkpoint file(s) of an interrupted save' in log  # the temp dir
    assert 'Resumed data position' in log
    assert not any('.tmp-' in p.name for p in work.iterdir())
    for name in ('iter_6.pth', 'iter_4.pth'):
        ref_model, ref_optim = read_full_state(str(reference / name))
        got_model, got_optim = read_full_state(str(work / name))
        assert_bitwise_equal(ref_model, got_model, f'{name} state_dict')
        assert_bitwise_equal(ref_optim, got_optim, f'{name} optimizer')

    # Another world size: DCP reshards the 2-rank checkpoint onto 3 ranks, which then
    # train on in bf16 (FSDP2's mixed precision: bf16 blocks, fp32 shards).
    resharded = tmp_path / 'three'
    shutil.copytree(reference / 'iter_4.pth', resharded / 'iter_4.pth')
    log = dist_run(
        config,
        resharded,
        ranks=3,
        options=[
            f'resume={resharded / "iter_4.pth"}', 'custom_hooks.0.dump_state=True',
            'strategy.mixed_precision.param_dtype=bfloat16',
            'strategy.mixed_precision.reduce_dtype=float32', 'optim_wrapper.amp=bf16'
        ])
    assert 'was saved by 2 ranks, this run has 3' in log
    loaded = torch.load(resharded / 'state_at_start.pth', weights_only=True)
    assert_bitwise_equal(read_full_state(str(reference / 'iter_4.pth'))[0], loaded, 'resharded')
    for record in read_ranks(resharded, 3):
        assert sorted(record['losses']) == [5, 6]
        assert all(math.isfinite(v) for v in record['losses'].values())
        assert record['block_dtype'] == 'torch.bfloat16'
    trained, _ = read_full_state(str(resharded / 'iter_6.pth'))
    floats = [v for v in trained.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 for v in floats)  # the fp32 master copy


def test_clear_errors(setup, tmp_path):
    root, _ = setup
    strategy = FSDP2Strategy(work_dir=str(tmp_path))
    with pytest.raises(ConfigError, match='no shardable student blocks'):
        strategy._wrap_model(torch.nn.Linear(2, 2))
    model = torch.nn.Module()
    model.backbone = torch.nn.Module()
    model.backbone.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(2)])
    with pytest.raises(ConfigError, match='needs at least 2 processes, this run has 1'):
        strategy._wrap_model(model)
    with pytest.raises(ConfigError, match='float16 needs loss scaling'):
        FSDP2Strategy(work_dir=str(tmp_path), mixed_precision=dict(param_dtype='float16'))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['buffer_dtype'\]"):
        FSDP2Strategy(work_dir=str(tmp_path), mixed_precision=dict(buffer_dtype='bfloat16'))
    with pytest.raises(CheckpointError, match='single-file checkpoint'):
        strategy.resume(str(root / 'teacher.pth'))
    with pytest.raises(CheckpointError, match=r'is not a sharded \(FSDP2\) checkpoint'):
        tool('model_converters/consolidate_fsdp_checkpoint').main(
            [str(root / 'teacher.pth'), str(tmp_path / 'x')])


def test_damaged_sharded_checkpoints_are_named(sharded, tmp_path):
    good = sharded / 'iter_2.pth'
    assert verify_sharded_checkpoint(str(good)) is None
    cases = {
        'no COMPLETE marker': lambda d: (d / 'COMPLETE').unlink(),
        '__1_0.distcp is missing': lambda d: (d / '__1_0.distcp').unlink(),
        'extra.pth has 10 bytes': lambda d: (d / 'extra.pth').write_bytes(b'0' * 10),
    }
    for expected, damage in cases.items():
        broken = tmp_path / expected.replace(' ', '_')
        shutil.copytree(good, broken)
        damage(broken)
        assert expected in verify_sharded_checkpoint(str(broken))
        with pytest.raises(CheckpointError, match=expected):
            consolidate(str(broken), str(tmp_path / 'out.pth'))


# config: (student parameters in millions, student blocks, teacher width, shard_teacher)
FSDP2_CONFIGS = {
    'clip_vitl_fsdp2': (303.0, 24, 1024, False),
    'dinov2g_vitg14_fsdp2': (1010.9, 40, 1536, True),
}


@pytest.mark.parametrize('name', sorted(FSDP2_CONFIGS))
def test_fsdp2_configs_shard_the_real_student(name):
    """The real-size student, counted on the meta device (the numbers the configs'
    comments and the README table give); the FD model with a 2-block student and a
    2-block teacher of the real widths runs one forward/backward."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    from mmfd.engine.strategies.fsdp2 import student_blocks
    from mmfd.engine.strategies.memory import build_on_meta, count
    params, depth, teacher_width, shard_teacher = FSDP2_CONFIGS[name]
    cfg = Config.fromfile(fd_config(name))
    assert cfg.runner_type == 'FlexibleRunner' and cfg.optim_wrapper.amp == 'bf16'
    assert cfg.strategy.type == 'FSDP2Strategy' and cfg.strategy.activation_checkpointing
    assert cfg.strategy.mixed_precision == dict(param_dtype='bfloat16', reduce_dtype='float32')
    assert cfg.strategy.get('shard_teacher', False) == shard_teacher
    holder = torch.nn.Module()
    holder.backbone = build_on_meta(cfg.model.backbone)
    assert len(student_blocks(holder)) == depth
    assert abs(count(holder.backbone) / 1e6 - params) < 0.1

    if name == 'clip_vitl_fsdp2':  # the model is clip_vitl's, built in test_fd_configs
        assert cfg.model == Config.fromfile(fd_config('clip_vitl')).model
        return
    cfg.model.backbone.arch = dict(cfg.model.backbone.arch, num_layers=2)
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.allow_random_init = True  # nothing can be downloaded here
    if cfg.model.teacher.type == 'TimmTeacher':
        cfg.model.teacher.model_kwargs = dict(depth=2)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    x = torch.randn(1, 3, 224, 224)
    target, _ = model.compute_target(x)
    assert target.shape == (1, 257, teacher_width)
    loss = model.train().loss(x)['loss']
    loss.backward()
    assert torch.isfinite(loss) and model.head.proj.weight.grad is not None
