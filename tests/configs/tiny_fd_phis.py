# tiny_fd with PHI-S target standardisation, its statistics estimated on 2 batches.
_base_ = ['./tiny_fd.py']
model = dict(head=dict(target_norm='phis'))
custom_hooks = [dict(type='TargetStatsHook', num_batches=2)]
train_cfg = dict(max_iters=10)
