# Demo step 3: ONE fine-tuning recipe for both backbones (the FD student and, as the
# baseline, the supervised teacher), from configs/_base_/finetune/: AdamW, weight
# decay 0.05 (not on norms, biases, layer scale, tokens, position tables), grad clip
# 5.0, layer-wise lr decay, linear warm-up then cosine per iteration, mixed precision,
# label smoothing 0.1, mean-pooled patch tokens -> LayerNorm -> linear head
# (init std 2e-5). Scaled for 24 px digits: 10 epochs / 2 warm-up, lr 5e-4 at batch
# 64, layer decay 0.65 (the DeiT row), drop path 0.1, and the mild crop of
# digits_cls_data.py instead of RandAugment / mixup / cutmix / erasing / flips.
# (The demo ran 15 epochs when it fine-tuned one model once; with three seeds of
# four models, 10 is what fits its time budget. Fixed from the measured cost of a
# step, before any 24 px fine-tune result was looked at.)
_base_ = [
    '../_base_/finetune/schedule_adamw_ld_100e.py',
    '../_base_/finetune/runtime_ft.py',
    './digits_cls_data.py',
]
max_epochs = 10
warmup_epochs = 2
lr = 5e-4
min_lr = 1e-6

optim_wrapper = dict(optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=0.65))
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
        eta_min=min_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=64)

# The head both fine-tunes get (backbone configs set in_channels / the backbone).
ft_head = dict(
    type='LinearClsHead',
    num_classes={{_base_.num_classes}},
    in_channels={{_base_.vit_arch.embed_dims}},
    loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
    init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)])

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    # The last epoch is what is reported (no best-epoch selection on val).
    checkpoint=dict(
        type='CheckpointHook', interval=1000, max_keep_ckpts=1, save_last=True, save_best=None))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
