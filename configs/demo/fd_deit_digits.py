# Demo, supervised track, step 2: Feature Distillation from the supervised teacher
# (teacher_deit_digits.py) into an FDViT student of the same size (one shared
# relative position bias, no absolute position embedding, layer scale 0.1, q/v
# biases). The FD method and recipe of configs/fd/* (whitened
# Smooth-L1 on every teacher token after its final norm, AdamW, cosine, grad clip
# 3.0, mixed precision, asymmetric drop path), scaled to 24 px digits and minutes
# of CPU. Labels are not used.
#   python tools/train.py configs/demo/fd_deit_digits.py --cfg-options \
#       model.teacher.checkpoint=TEACHER.pth train_dataloader.dataset.data_root=DATA
_base_ = [
    '../_base_/models/fd_vit_base_p16.py',
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_300e.py',
    '../_base_/default_runtime.py',
    './digits_common.py',
]
max_epochs = 30
warmup_epochs = 3
lr = 3e-3  # at batch 32 (no auto-scaling: the demo has fixed batch sizes)
batch_size = 32  # more, smaller steps: a lower FD loss in the same time

model = dict(
    # In the model, not only at top level: tools that build cfg.model alone
    # (analyze_attention, loss_landscape) then normalise as training did.
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor', mean={{_base_.mean}}, std={{_base_.std}}, to_rgb=True),
    input_size={{_base_.img_size}},
    backbone=dict(
        arch=dict(
            _delete_=True,  # replaces the base arch name
            embed_dims={{_base_.vit_arch.embed_dims}},
            num_layers={{_base_.vit_arch.num_layers}},
            num_heads={{_base_.vit_arch.num_heads}},
            feedforward_channels={{_base_.vit_arch.feedforward_channels}}),
        img_size={{_base_.img_size}},
        patch_size={{_base_.patch_size}},
        drop_path_rate=0.1),
    # Any mmpretrain config + checkpoint is a teacher: here step 1's classifier.
    teacher=dict(
        type='MMPretrainTeacher',
        config='configs/demo/teacher_deit_digits.py',
        checkpoint='work_dirs/demo/supervised/teacher/epoch_30.pth'))

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),  # as the FD base: a bad image is skipped, logged
    dict(
        type='RandomResizedCrop',
        scale={{_base_.img_size}},
        crop_ratio_range=(0.6, 1.0),
        interpolation='bilinear',
        backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root={{_base_.digits_root}},
        data_prefix='train',
        with_label=False,
        pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=lr))
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
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(enable=False, base_batch_size=32)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1000, max_keep_ckpts=1, save_last=True))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
