# Mask R-CNN on COCO with the SwinV2-B distilled from EsViT Swin-B
# (configs/fd/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k.py) and FPN: mmdet's Swin
# recipe (multi-scale + crop training, 36 epochs, AdamW lr 1e-4 at batch 16, weight decay 0.05,
# AMP) plus layer-wise lr decay 0.9 and drop path 0.3. The windows stay those of distillation (14,
# 7 in the last stage); feature maps are padded to whole windows (pad_small_map). The backbone
# reads the FD checkpoint itself
# (work_dirs/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k/epoch_300.pth).
#
#   tools/dist_train.sh configs/mmdet/mask-rcnn_fd-esvit-swinv2b_fpn_ms-crop-3x_coco.py 8
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
    '../_base_/backbones/fd_swinv2_base_w14.py',
]
# `import mmfd` registers everything these configs name (see mmfd/registry.py).
custom_imports = dict(imports=['mmfd'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _base_.fd_swinv2_backbone,
        _delete_=True,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        pad_small_map=True,
        with_cp=False,
        init_cfg=dict(
            _base_.fd_swinv2_backbone.init_cfg,
            # FD trains norm3 only; the norms of the other output stages are new.
            ignore_missing=[r'^norm[012]\.'])),
    neck=dict(in_channels=[128, 256, 512, 1024]))

optim_wrapper = dict(
    type='FDOptimWrapper',  # fp16 AMP on CUDA (mmfd's; bf16 without CUDA)
    amp='auto',
    max_consecutive_nonfinite=None,
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.9,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys=_base_.swinv2_no_decay))
auto_scale_lr = dict(enable=True, base_batch_size=16)
