# Labelled digits for the supervised teacher (step 1) and the fine-tunes (step 3).
# The ImageNet recipes' flips and heavy crops do not suit digits (a mirrored 2 is
# not a 2; an 8 % crop of an 8 x 8 digit is a blob): a mild random-resized crop.
_base_ = ['./digits_common.py']
dataset_type = 'CustomDataset'

data_preprocessor = dict(
    num_classes={{_base_.num_classes}}, mean={{_base_.mean}}, std={{_base_.std}}, to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale={{_base_.img_size}},
        crop_ratio_range=(0.6, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=({{_base_.img_size}}, {{_base_.img_size}}),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size={{_base_.batch_size}},
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root={{_base_.digits_root}},
        data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root={{_base_.digits_root}},
        data_prefix='val',
        pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
