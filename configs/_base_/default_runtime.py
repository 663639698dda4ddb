# Runtime shared by every mmfd config (mmpretrain conventions).
default_scope = 'mmpretrain'
# Importing mmfd registers FeatureDistiller, FDViT, FDHead, the teachers and hooks.
custom_imports = dict(imports=['mmfd'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Written to a temp file and renamed: a kill never leaves a corrupt checkpoint;
    # --resume picks the newest complete one and restores RNG + data position.
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo on machines without CUDA.
    dist_cfg=dict(backend='nccl'),
)

# Scalars go to work_dir/<run>/vis_data/scalars.json. TensorBoard is an opt-in, not a
# runtime requirement: `pip install tensorboard`, then in your config
#   visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
#                                   dict(type='TensorboardVisBackend')])
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
