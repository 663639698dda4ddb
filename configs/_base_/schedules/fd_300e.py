# The release's distillation schedule (docs/method.md): 300 epochs, AdamW, grad clip
# 3.0, AMP, cosine stepped per iteration after 10 linear warm-up epochs. Every lr is
# given per 512 images and scaled by total batch / 512 (auto_scale_lr below): base
# 3e-4, warm-up from 5e-7, minimum 5e-6 per 512, i.e. 1.2e-3 / 2e-6 / 2e-5 at the
# release's total batch of 2048. The warm-up start and the minimum are written as
# ratios of the base lr, so they follow auto_scale_lr exactly like the base lr.
base_lr = 3e-4  # per 512 images
warmup_from = 5e-7  # per 512 images
min_lr = 5e-6  # per 512 images
max_epochs = 300
warmup_epochs = 10

optim_wrapper = dict(
    # Mixed precision on, as in the release: fp16 with dynamic loss scaling on CUDA,
    # bf16 autocast without CUDA on CPUs with native bf16, fp32 on others (--no-amp
    # or amp='off' for fp32 everywhere). Steps with a NaN/inf loss or gradient are
    # skipped and counted; 10 in a row stop the run, naming the last good checkpoint.
    type='FDOptimWrapper',
    amp='auto',
    max_consecutive_nonfinite=10,
    # mmengine's default constructor, minus the frozen teacher (one log line instead
    # of a warning per teacher parameter).
    constructor='FDOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    # No decay on 1-D parameters (norms, layer scale, q/v biases), biases,
    # cls_token, pos_embed. The 2-D shared relative position table IS decayed.
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            'cls_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
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

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)

# lr = base_lr * (GPUs x batch per GPU) / 512, whatever the number of GPUs.
auto_scale_lr = dict(base_batch_size=512, enable=True)
