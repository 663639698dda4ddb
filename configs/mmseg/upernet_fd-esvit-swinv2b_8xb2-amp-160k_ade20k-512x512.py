# UperNet on ADE20K with the SwinV2-B distilled from EsViT Swin-B
# (configs/fd/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k.py): mmseg's Swin UperNet
# recipe (512 x 512 crops, AdamW lr 6e-5 at batch 16, weight decay 0.01, 1500 warm-up iterations,
# poly decay, 160k iterations) plus layer-wise lr decay 0.9, drop path 0.3 and AMP. The windows
# stay those of distillation (14, 7 in the last stage); feature maps are padded to whole windows
# (pad_small_map). The backbone reads the FD checkpoint itself
# (work_dirs/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k/epoch_300.pth).
#
#   tools/dist_train.sh configs/mmseg/upernet_fd-esvit-swinv2b_8xb2-amp-160k_ade20k-512x512.py 8
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
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
        init_cfg=dict(
            _base_.fd_swinv2_backbone.init_cfg,
            # FD trains norm3 only; the norms of the other output stages are new.
            ignore_missing=[r'^norm[012]\.'])),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='FDOptimWrapper',  # fp16 AMP on CUDA (mmfd's; bf16 without CUDA)
    amp='auto',
    max_consecutive_nonfinite=None,
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys=_base_.swinv2_no_decay))
auto_scale_lr = dict(enable=True, base_batch_size=16)
