# Runtime of the downstream fine-tunes (mmpretrain scope): mmfd's runtime plus the
# modules of the downstream path (StrictPretrained, layer-decay constructor).
_base_ = ['../default_runtime.py']
custom_imports = dict(
    imports=['mmfd', 'mmfd.models.utils', 'mmfd.models.necks',
             'mmfd.engine.optimizers'],
    allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='auto'))
