# ImageClassifier on the distilled SwinV2-B (configs/_base_/backbones/fd_swinv2_base_w14.py):
# global average pool of the stage-4 map (after norm3, which FD trained) -> head.
_base_ = ['../backbones/fd_swinv2_base_w14.py']
model = dict(
    type='ImageClassifier',
    backbone=dict(_base_.fd_swinv2_backbone, drop_path_rate=0.4),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # The release's SwinV2 fine-tune head: trunc-normal std 0.02 (its ViT
        # fine-tune scales the head by 0.001; its Swin one does not).
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.02)]),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
