# Mask R-CNN on COCO with the SwinV2-B distilled from EsViT Swin-B
# (configs/fd/esvit_swinb.py) and FPN: mmdet's Swin recipe (multi-scale + crop
# training, 36 epochs, AdamW lr 1e-4 at batch 16, weight decay 0.05, AMP) plus
# layer-wise lr decay 0.9 and drop path 0.3.
# The windows stay those of distillation (14, 7 in the last stage); feature maps
# are padded to whole windows (pad_small_map).
#
#   python tools/convert_fd_checkpoint.py work_dirs/esvit_swinb/epoch_300.pth \
#       checkpoints/fd_esvit_swinv2b_mmdet.pth --target mmdet
#   tools/dist_train.sh configs/mmdet/mask-rcnn_fd-esvit-swinv2b_fpn_ms-crop-3x_coco.py 8
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'
# `import mmfd` registers everything these configs name (see mmfd/registry.py).
custom_imports = dict(imports=['mmfd'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.FDSwinTransformerV2',  # drop path after the post-norm
        arch='base',
        img_size=224,
        window_size=[14, 14, 14, 7],
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        pad_small_map=True,
        with_cp=False,
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='checkpoints/fd_esvit_swinv2b_mmdet.pth',
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
        custom_keys={
            'cpb_mlp': dict(decay_mult=0.0),
            'logit_scale': dict(decay_mult=0.0),
        }))
auto_scale_lr = dict(enable=True, base_batch_size=16)
