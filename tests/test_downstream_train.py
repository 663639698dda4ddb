"""The shipped downstream configs, shrunk to tiny widths and images, train a few
iterations through tools/train.py on generated data and evaluate with their
toolbox's metric: ImageNet-style top-1 (mmpretrain), COCO bbox/segm mAP (mmdet
Mask R-CNN + SimpleFPN / FPN), ADE20K mIoU (mmseg UperNet). Each starts from a tiny
FD training checkpoint itself, converted in memory by the configs' StrictPretrained
(convert='fd_vit' / 'fd_swinv2'), as users run them."""
import pytest
from downstream_fixtures import (REPO, TINY_SWIN, TINY_SWIN_IMG, TINY_SWIN_WINDOWS, TINY_VIT,
                                 TINY_VIT_IMG, is_finite_number, last_metric, make_ade20k,
                                 make_coco, make_fd_swin_checkpoint, make_fd_vit_checkpoint,
                                 make_labelled_folder, quiet_runtime, read_log, replace_values,
                                 run_train_tool)
from mmengine.config import Config

import mmfd  # noqa: F401

pytestmark = pytest.mark.filterwarnings('ignore')


@pytest.fixture(scope='module')
def fd_vit(tmp_path_factory):
    return make_fd_vit_checkpoint(tmp_path_factory.mktemp('fd') / 'fd_vit.pth')


@pytest.fixture(scope='module')
def fd_swin(tmp_path_factory):
    return make_fd_swin_checkpoint(tmp_path_factory.mktemp('fd') / 'fd_swin.pth')


def shrink(cfg, mapping, keys=('model', 'train_dataloader', 'val_dataloader', 'test_dataloader')):
    for key in keys:
        cfg[key] = replace_values(cfg[key].to_dict(), mapping)
    return cfg


def tiny_vit_backbone(backbone, checkpoint, **kwargs):
    backbone.update(arch=TINY_VIT, img_size=TINY_VIT_IMG, **kwargs)
    backbone.init_cfg.checkpoint = str(checkpoint)


def tiny_swin_backbone(backbone, checkpoint):
    backbone.update(arch=TINY_SWIN, window_size=TINY_SWIN_WINDOWS, img_size=TINY_SWIN_IMG)
    backbone.init_cfg.checkpoint = str(checkpoint)


def assert_strict_load_logged(work_dir, backbone='BEiTViT'):
    log = read_log(work_dir)
    assert f'StrictPretrained: {backbone} <- ' in log
    assert 'loaded' in log
    return log


# ----------------------------------------------------------------- ImageNet-style
def test_imagenet_finetune_trains_and_evaluates_top1(fd_vit, tmp_path):
    fd_path, _ = fd_vit
    data = make_labelled_folder(tmp_path / 'data')

    cfg = Config.fromfile(
        REPO / 'configs/fd/benchmarks/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k.py')
    quiet_runtime(cfg, tmp_path / 'work')
    tiny_vit_backbone(cfg.model.backbone, fd_path)
    cfg.model.head.update(in_channels=TINY_VIT['embed_dims'], num_classes=2)
    cfg.data_preprocessor.num_classes = 2
    mapping = {224: TINY_VIT_IMG, 256: 73}
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val')):
        pipeline = replace_values(
            cfg[loader].dataset.pipeline.to_dict() if hasattr(
                cfg[loader].dataset.pipeline, 'to_dict') else cfg[loader].dataset.pipeline, mapping)
        cfg[loader].dataset = dict(
            type='CustomDataset', data_root=str(data), data_prefix=split, pipeline=pipeline)
        cfg[loader].batch_size = 4
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator = dict(type='Accuracy', topk=(1, ))  # 2 classes: no top-5
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_epochs=2, val_interval=2)

    run_train_tool(cfg, tmp_path / 'tiny_finetune.py')
    top1 = last_metric(tmp_path / 'work', 'accuracy/top1')
    assert is_finite_number(top1) and 0 <= top1 <= 100
    assert is_finite_number(last_metric(tmp_path / 'work', 'loss'))
    log = assert_strict_load_logged(tmp_path / 'work')
    assert 'missing keys (left as initialised) (2): ln2.weight, ln2.bias' in log
    assert 'unexpected keys (not used) (2): ln1.weight, ln1.bias' in log


# ----------------------------------------------------------------- mmdet
def _tiny_mask_rcnn(cfg, coco, work_dir, width=32):
    quiet_runtime(cfg, work_dir)
    model = cfg.model
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    model.roi_head.bbox_head.update(in_channels=width, fc_out_channels=64, num_classes=2)
    model.roi_head.mask_roi_extractor.out_channels = width
    model.roi_head.mask_head.update(in_channels=width, conv_out_channels=width, num_classes=2)
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    model.train_cfg.rcnn.sampler.num = 64
    # Random tiny weights: keep every detection so that COCOeval has results.
    model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
    classes = ('box', 'diamond')
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                          ('test_dataloader', 'val')):
        cfg[loader].batch_size = 2 if split == 'train' else 1
        cfg[loader].dataset.update(
            data_root=str(coco),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img='images/'),
            metainfo=dict(classes=classes))
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = str(coco / 'annotations/instances_val.json')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2)
    cfg.log_processor = dict(by_epoch=False)
    return cfg


def test_mmdet_vit_mask_rcnn_simplefpn_trains_and_evaluates_coco(fd_vit, tmp_path):
    fd_path, _ = fd_vit
    coco = make_coco(tmp_path / 'coco')

    cfg = Config.fromfile(REPO / 'configs/mmdet/mask-rcnn_fd-clip-vitb_simplefpn_lsj-100e_coco.py')
    size = (TINY_VIT_IMG, TINY_VIT_IMG)
    shrink(cfg, {(1024, 1024): size})
    tiny_vit_backbone(cfg.model.backbone, fd_path)
    dims = TINY_VIT['embed_dims']
    cfg.model.neck.update(
        backbone_channel=dims, in_channels=[dims // 4, dims // 2, dims, dims], out_channels=32)
    _tiny_mask_rcnn(cfg, coco, tmp_path / 'work')

    run_train_tool(cfg, tmp_path / 'tiny_mask_rcnn_vit.py')
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50'):
        assert is_finite_number(last_metric(tmp_path / 'work', key)), key
    assert is_finite_number(last_metric(tmp_path / 'work', 'loss_mask'))
    log = assert_strict_load_logged(tmp_path / 'work')
    assert 'unexpected keys (not used) (2): ln1.weight, ln1.bias' in log


def test_mmdet_swin_mask_rcnn_fpn_trains_and_evaluates_coco(fd_swin, tmp_path):
    fd_path, _ = fd_swin
    coco = make_coco(tmp_path / 'coco', n_train=2, n_val=1)

    cfg = Config.fromfile(REPO / 'configs/mmdet/mask-rcnn_fd-esvit-swinv2b_fpn_ms-crop-3x_coco.py')
    # The multi-scale pipeline resizes to 480-800 px: scale it down 10x.
    mapping = {(w, 1333): (w // 10, 133) for w in range(400, 801, 16)}
    mapping.update({(w, 1333): (w // 10, 133) for w in (400, 500, 600)})
    mapping.update({(1333, 800): (133, 80), (384, 600): (38, 60)})
    shrink(cfg, mapping)
    tiny_swin_backbone(cfg.model.backbone, fd_path)
    cfg.model.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    _tiny_mask_rcnn(cfg, coco, tmp_path / 'work')
    cfg.train_dataloader.batch_size = 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1)

    run_train_tool(cfg, tmp_path / 'tiny_mask_rcnn_swin.py')
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert is_finite_number(last_metric(tmp_path / 'work', key)), key
    log = assert_strict_load_logged(tmp_path / 'work', 'FDSwinTransformerV2')
    assert 'missing keys (left as initialised) (6): norm0.weight' in log


# ----------------------------------------------------------------- mmseg
def _tiny_upernet(cfg, ade, work_dir, in_channels, aux_channels):
    quiet_runtime(cfg, work_dir)
    bn = dict(type='BN', requires_grad=True)  # SyncBN needs a process group
    cfg.model.decode_head.update(in_channels=in_channels, channels=32, norm_cfg=bn)
    cfg.model.auxiliary_head.update(in_channels=aux_channels, channels=16, norm_cfg=bn)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(ade)
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2)
    return cfg


MMSEG_MAPPING = {(512, 512): (64, 64), (2048, 512): (256, 64), (341, 341): (43, 43)}


def test_mmseg_vit_upernet_trains_and_evaluates_miou(fd_vit, tmp_path):
    fd_path, _ = fd_vit
    ade = make_ade20k(tmp_path / 'ade')

    cfg = Config.fromfile(REPO /
                          'configs/mmseg/upernet_fd-clip-vitb_mln_8xb2-amp-160k_ade20k-512x512.py')
    shrink(cfg, MMSEG_MAPPING)
    dims = TINY_VIT['embed_dims']
    tiny_vit_backbone(cfg.model.backbone, fd_path, out_indices=[0, 1, 2, 3])
    cfg.model.neck.update(in_channels=[dims] * 4, out_channels=dims)
    _tiny_upernet(cfg, ade, tmp_path / 'work', [dims] * 4, dims)

    run_train_tool(cfg, tmp_path / 'tiny_upernet_vit.py')
    for key in ('mIoU', 'aAcc'):
        assert is_finite_number(last_metric(tmp_path / 'work', key)), key
    log = assert_strict_load_logged(tmp_path / 'work')
    assert 'unexpected keys (not used) (2): ln1.weight, ln1.bias' in log


def test_mmseg_swin_upernet_trains_and_evaluates_miou(fd_swin, tmp_path):
    fd_path, _ = fd_swin
    ade = make_ade20k(tmp_path / 'ade', n_train=2, n_val=1)

    cfg = Config.fromfile(REPO /
                          'configs/mmseg/upernet_fd-esvit-swinv2b_8xb2-amp-160k_ade20k-512x512.py')
    shrink(cfg, MMSEG_MAPPING)
    tiny_swin_backbone(cfg.model.backbone, fd_path)
    _tiny_upernet(cfg, ade, tmp_path / 'work', [16, 32, 64, 128], 64)

    run_train_tool(cfg, tmp_path / 'tiny_upernet_swin.py')
    assert is_finite_number(last_metric(tmp_path / 'work', 'mIoU'))
    assert_strict_load_logged(tmp_path / 'work', 'FDSwinTransformerV2')
