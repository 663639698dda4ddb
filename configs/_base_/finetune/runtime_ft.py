# Runtime of the downstream fine-tunes (mmpretrain scope): mmfd's runtime (whose
# custom_imports=['mmfd'] registers StrictPretrained and the layer-decay constructor)
# keeping the best and the last two checkpoints.
_base_ = ['../default_runtime.py']
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='auto'))
