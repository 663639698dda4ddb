# Fine-tuning schedule of the FD release (docs/method.md), ViT-B defaults:
# AdamW (0.9, 0.999), weight decay 0.05, grad clip 5.0, layer-wise lr decay,
# 100 epochs with 20 linear warm-up epochs, cosine stepped per iteration, mixed
# precision. Every lr is per 512 images and scaled by total batch / 512
# (auto_scale_lr): base 1.25e-3, warm-up from 2.5e-7, minimum 2.5e-7; the release's
# total batch is 2048 (16 GPUs x 128; its EsViT fine-tune used 16 x 64 = 1024).
# Warm-up start and minimum are ratios of the base lr, so they scale with it; with
# layer decay each layer's group starts and ends at the same ratio of its own lr.
# Other rows of the table override base_lr, layer_decay_rate and param_scheduler.
base_lr = 1.25e-3  # per 512 images
layer_decay_rate = 0.6
warmup_from = 2.5e-7  # per 512 images
min_lr = 2.5e-7  # per 512 images
max_epochs = 100
warmup_epochs = 20

optim_wrapper = dict(
    type='FDOptimWrapper',  # fp16 AMP on CUDA; see configs/_base_/schedules/fd_300e.py
    amp='auto',
    max_consecutive_nonfinite=None,
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=layer_decay_rate,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,  # layer scale (gamma), q/v biases
        # The release's ViT fine-tune skips decay only for pos_embed, cls_token, 1-D parameters
        # and biases: the per-layer relative position tables ARE decayed. (Its SwinV2 fine-tune
        # excludes its position-bias MLP and logit scale: see
        # configs/fd/benchmarks/swinv2-base-w14_fd-esvit-swin-b_8xb128-coslr-100e_in1k.py.)
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_from / base_lr,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min_ratio=min_lr / base_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr = base_lr * total batch / 512, whatever the number of GPUs.
auto_scale_lr = dict(base_batch_size=512, enable=True)
