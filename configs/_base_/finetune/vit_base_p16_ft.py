# ImageClassifier on a distilled ViT-B/16 (checkpoint from
# `tools/convert_fd_checkpoint.py FD.pth OUT.pth --target mmpretrain`).
# mmpretrain's BEiTViT with one relative position table per block (initialised from
# the FD student's shared table by the converter), layer scale, q/v biases;
# mean-pooled patch tokens (CLS excluded) -> LayerNorm (ln2) -> linear head, as the
# release fine-tunes: the student's final norm (ln1) is not used.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='BEiTViT',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.3,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,
        bias='qv_bias',
        final_norm=False,
        # One drop path per residual branch, as the release: without this,
        # mmpretrain's BEiT layer drops the MLP branch twice (its FFN's own
        # DropPath, then the layer's). ffn_cfg REPLACES BEiT's default
        # dict(add_identity=False), so add_identity=False is repeated.
        layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None)),
        out_type='avg_featmap',
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='checkpoints/fd_vitb_mmpretrain.pth',
            prefix='backbone.',
            ignore_missing=[r'^ln2\.'],  # the new pooled-feature norm
            ignore_unexpected=[r'^ln1\.'])),  # FD's final norm, dropped as in the release
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
