# FD: EsViT Swin-B (window 14) teacher, stage-4 map 7x7x1024 -> SwinV2-B (window 14).
# Swin schedule, per 512 images: 2e-4, warm-up from 1e-6, cosine to 1e-5 (all three
# scaled by total batch / 512); no weight decay on SwinV2's position-bias MLP and
# logit scale. The student is FDSwinTransformerV2 (drop path after the post-norm,
# the release's init, fp32 cosine attention).
_base_ = [
    '../_base_/models/fd_swinv2_base_w14.py',
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_300e.py',
    '../_base_/default_runtime.py',
]
teacher_checkpoint = 'checkpoints/esvit/esvit_swin_base_w14.pth'
model = dict(
    backbone=dict(drop_path_rate=0.3),
    teacher=dict(
        type='EsViTTeacher', arch='esvit_swin_base', out_stage=4, checkpoint=teacher_checkpoint))

base_lr = 2e-4  # per 512 images
warmup_from = 1e-6
min_lr = 1e-5
optim_wrapper = dict(
    optimizer=dict(lr=base_lr),
    paramwise_cfg=dict(
        custom_keys={
            'cpb_mlp': dict(decay_mult=0.0),
            'logit_scale': dict(decay_mult=0.0),
            'absolute_pos_embed': dict(decay_mult=0.0),
        }))
# The base schedule's two phases with this recipe's ratios (same epochs).
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=warmup_from / base_lr),
    dict(_base_.param_scheduler[1], eta_min_ratio=min_lr / base_lr),
]
