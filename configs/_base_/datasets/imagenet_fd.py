# ImageNet-1K train split for distillation: labels are not used.
# The release's augmentation: RandomResizedCrop(224, scale 0.08-1, ratio 3/4-4/3,
# bilinear) + horizontal flip, nothing else. Teacher and student see the same view.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
input_size = 224

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    # mmcv's LoadImageFromFile that returns None for an unreadable/truncated image:
    # mmengine's dataset then fetches another one (max_refetch). Each bad file is
    # logged once; more than max_bad_samples (per process, all dataloader workers
    # together) stop the run with the list of files.
    dict(type='SafeLoadImageFromFile', max_bad_samples=100),
    dict(
        type='RandomResizedCrop',
        scale=input_size,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3. / 4., 4. / 3.),
        interpolation='bilinear',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    # The plain dataset (no wrapper), so the usual --cfg-options
    # train_dataloader.dataset.data_root=... applies. AtomicCheckpointHook seeds each
    # sample's augmentation from its index: a resumed run sees the same crops.
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',  # data/imagenet/train/<class>/*.JPEG or meta/train.txt
        pipeline=train_pipeline))
