# UperNet on ADE20K with the ViT-B/16 distilled from CLIP (configs/fd/clip_vitb.py)
# and mmseg's MultiLevelNeck (blocks 4, 6, 8, 12 -> strides 4, 8, 16, 32).
# Recipe after mmseg's MAE ViT-B UperNet: 512 x 512 crops, AdamW lr 1e-4 (batch 16),
# weight decay 0.05, layer decay 0.65, drop path 0.1, 1500 warm-up iterations, poly
# decay, 160k iterations, AMP; sliding-window test with 512 x 512 windows.
# The backbone is mmpretrain's BEiTViT with one relative position table per block,
# interpolated 14x14 -> 32x32 by the converter. Its grid is fixed, so test images
# are padded to at least 512 x 512 (data_preprocessor.test_cfg) and every window
# is exactly 512 x 512.
#
#   python tools/convert_fd_checkpoint.py work_dirs/clip_vitb/epoch_300.pth \
#       checkpoints/fd_clip_vitb_mmseg_512.pth --target mmseg --img-size 512
#   tools/dist_train.sh configs/mmseg/upernet_fd-clip-vitb_mln_8xb2-amp-160k_ade20k-512x512.py 8
_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
# `import mmfd` registers everything these configs name (see mmfd/registry.py).
custom_imports = dict(imports=['mmfd'], allow_failed_imports=False)

crop_size = (512, 512)
num_classes = 150
model = dict(
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size=crop_size)),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.BEiTViT',
        arch='base',
        img_size=crop_size[0],
        patch_size=16,
        drop_path_rate=0.1,
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
        out_type='featmap',
        out_indices=[3, 5, 7, 11],
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='checkpoints/fd_clip_vitb_mmseg_512.pth',
            ignore_unexpected=[r'^ln1\.'])),  # FD's final norm is not used
    neck=dict(in_channels=[768, 768, 768, 768], out_channels=768, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768, num_classes=num_classes),
    auxiliary_head=dict(in_channels=768, num_classes=num_classes),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='FDOptimWrapper',  # fp16 AMP on CUDA (mmfd's; bf16 without CUDA)
    amp='auto',
    max_consecutive_nonfinite=None,
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)  # x 8 GPUs = 16
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# lr 1e-4 is for a total batch of 16; scaled to the actual batch.
auto_scale_lr = dict(enable=True, base_batch_size=16)
