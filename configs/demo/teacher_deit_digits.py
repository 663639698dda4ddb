# Demo, supervised track, step 1: a small supervised DeiT-style ViT teacher
# (mmpretrain ImageClassifier + VisionTransformer: absolute position embedding, CLS
# token, CLS -> linear head), trained from scratch on the digits' train split.
#   python tools/train.py configs/demo/teacher_deit_digits.py --cfg-options \
#       train_dataloader.dataset.data_root=DATA val_dataloader.dataset.data_root=DATA
_base_ = ['./digits_cls_data.py', '../_base_/default_runtime.py']
max_epochs = 30
warmup_epochs = 3
lr = 2e-3  # at batch 64 (no auto-scaling: the demo has one batch size)

model = dict(
    type='ImageClassifier',
    # In the model, not only at top level: tools that build cfg.model alone
    # (analyze_attention, loss_landscape) then normalise as training did.
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(
        type='VisionTransformer',
        arch={{_base_.vit_arch}},
        img_size={{_base_.img_size}},
        patch_size={{_base_.patch_size}},
        drop_path_rate=0.1,
        out_type='cls_token',
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=.02),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
        ]),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes={{_base_.num_classes}},
        in_channels={{_base_.vit_arch.embed_dims}},
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))

optim_wrapper = dict(
    type='FDOptimWrapper',
    # fp32: this is a CPU demo, and with bf16 autocast PyTorch's CPU attention
    # kernel makes the backward pass of mmpretrain's VisionTransformer slower than
    # fp32 (measured: ~1.5x per step at 24 px). The FD student and the fine-tunes
    # keep amp='auto' (the recipe's mixed precision).
    amp='off',
    max_consecutive_nonfinite=None,
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
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
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=64)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1000, max_keep_ckpts=1, save_last=True))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
