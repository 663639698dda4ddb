# Demo, contrastive track, step 1: a self-supervised ViT teacher trained with
# mmpretrain's own MoCo v3 (MoCoV3 + MoCoV3ViT + MoCoV3Head) on the digits' train
# split WITHOUT labels (CustomDataset with_label=False). Same ViT size as the
# supervised teacher (digits_common.py). MoCo v3's recipe (two asymmetric views,
# 3-layer projector, 2-layer predictor, momentum encoder, frozen random patch
# projection, fixed 2-D sin-cos positions, temperature 0.2, AdamW wd 0.1), scaled
# down to 24 px digits and minutes of CPU:
# - the views suit digits: no horizontal flip (a mirrored 2 is not a 2), no hue /
#   saturation / grey-scale (the images are grey), a milder crop (a 20 % crop of an
#   8 x 8 digit is a blob), a small rotation, a blur radius sized for 24 px;
# - projector / predictor 512 wide (4096 in the paper: the ViT here is 96 wide);
# - plain BatchNorm in the MLPs (one CPU process, no SyncBN);
# - fp32: on CPUs, bf16 autocast is no faster for this model and the contrastive
#   logits (cosines / 0.2) want the precision.
#   python tools/train.py configs/demo/moco_vit_digits.py --cfg-options \
#       train_dataloader.dataset.data_root=DATA
_base_ = ['../_base_/default_runtime.py', './digits_common.py']
max_epochs = 20
warmup_epochs = 2
lr = 1e-3  # at batch 128 (no auto-scaling: the demo has fixed batch sizes)
batch_size = 128  # in-batch negatives: more is better, 11 steps per epoch
temperature = 0.2
hidden = 512
out = 128

data_preprocessor = dict(
    type='SelfSupDataPreprocessor', mean={{_base_.mean}}, std={{_base_.std}}, to_rgb=True)


def _view(blur_prob, solarize_prob):
    return [
        dict(
            type='RandomResizedCrop',
            scale={{_base_.img_size}},
            crop_ratio_range=(0.4, 1.0),
            backend='pillow',
            interpolation='bicubic'),
        # Uniform in +-15 degrees; the background of a digit is black.
        dict(
            type='Rotate',
            magnitude_range=(0, 15),
            magnitude_std='inf',
            pad_val=0,
            prob=0.8,
            interpolation='bilinear'),
        dict(
            type='RandomApply',
            transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
            prob=0.8),
        dict(type='GaussianBlur', magnitude_range=(0.1, 1.0), magnitude_std='inf', prob=blur_prob),
        dict(type='Solarize', thr=128, prob=solarize_prob),
    ]


# MoCo v3's asymmetric pair: always blurred / rarely blurred and sometimes solarised.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1], transforms=[_view(1.0, 0.0),
                                                         _view(0.1, 0.2)]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    drop_last=True,  # BatchNorm and the in-batch negatives want full batches
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root={{_base_.digits_root}},
        data_prefix='train',
        with_label=False,
        pipeline=train_pipeline))


def _mlp(in_channels, num_layers):
    return dict(
        type='NonLinearNeck',
        in_channels=in_channels,
        hid_channels=hidden,
        out_channels=out,
        num_layers=num_layers,
        with_bias=False,
        with_last_bn=True,
        with_last_bn_affine=False,
        with_last_bias=False,
        with_avg_pool=False,
        norm_cfg=dict(type='BN1d'))


model = dict(
    type='MoCoV3',
    base_momentum=0.01,
    # In the model, not only at top level: the FD teacher and the diagnostic
    # tools read the normalisation from here.
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MoCoV3ViT',
        arch={{_base_.vit_arch}},
        img_size={{_base_.img_size}},
        patch_size={{_base_.patch_size}},
        stop_grad_conv1=True),  # MoCo v3's stabiliser: a random, frozen patch projection
    neck=_mlp({{_base_.vit_arch.embed_dims}}, 3),
    head=dict(
        type='MoCoV3Head',
        predictor=_mlp(out, 2),
        loss=dict(type='CrossEntropyLoss', loss_weight=2 * temperature),
        temperature=temperature))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.95), weight_decay=0.1),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={'.cls_token': dict(decay_mult=0.)}))
find_unused_parameters = True
# tools/run_demo.py rescales these two by index (param_scheduler.N.*) for --scale.
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(enable=False, base_batch_size=batch_size)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1000, max_keep_ckpts=1, save_last=True))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
