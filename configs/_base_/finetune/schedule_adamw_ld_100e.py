# Fine-tuning schedule of the FD release (../shared/FD_METHOD.md), ViT-B defaults:
# AdamW (0.9, 0.999), weight decay 0.05, grad clip 5.0, layer-wise lr decay,
# 100 epochs with 20 linear warm-up epochs from 2.5e-7, cosine to 2.5e-7, stepped
# per iteration, mixed precision. The lr is given per 512 images and scaled to the
# actual total batch by auto_scale_lr. Other rows of the table override
# optimizer.lr, paramwise_cfg.layer_decay_rate and param_scheduler.
base_lr = 1.25e-3   # per 512 images
layer_decay_rate = 0.6
warmup_from = 2.5e-7
min_lr = 2.5e-7
max_epochs = 100
warmup_epochs = 20

optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='float16',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8,
                   weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=layer_decay_rate,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,   # layer scale (gamma), q/v biases
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            # The release's fine-tune models list the position tables as
            # no_weight_decay keywords (unlike its distillation wrapper).
            'relative_position_bias_table': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(type='LinearLR', start_factor=warmup_from / base_lr, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min=min_lr, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr = base_lr * total batch / 512, whatever the number of GPUs.
auto_scale_lr = dict(base_batch_size=512, enable=True)
