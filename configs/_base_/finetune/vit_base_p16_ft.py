# ImageClassifier on the distilled ViT-B/16 (configs/_base_/backbones/fd_vit_base_p16.py):
# mean-pooled patch tokens (CLS excluded) -> LayerNorm (ln2) -> linear head, as the
# release fine-tunes; the student's final norm (ln1) is not used.
_base_ = ['../backbones/fd_vit_base_p16.py']
model = dict(
    type='ImageClassifier',
    backbone=dict(
        _base_.fd_vit_backbone,
        drop_path_rate=0.3,
        out_type='avg_featmap',
        init_cfg=dict(_base_.fd_vit_backbone.init_cfg,
                      ignore_missing=[r'^ln2\.'])),  # the new pooled-feature norm
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # trunc-normal std 0.02 scaled by 0.001, as the release's head init.
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
