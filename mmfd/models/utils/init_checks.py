"""Whether a module's ``init_cfg`` loads weights (a from-scratch init must not
overwrite them). Kept apart from the loaders so that students and heads need not
import the downstream loading code."""

# Initialisers that load weights: mmengine's and mmfd's strict one.
PRETRAINED_INITS = ('Pretrained', 'StrictPretrained')


def loads_pretrained(init_cfg) -> bool:
    return isinstance(init_cfg, dict) and init_cfg.get('type') in PRETRAINED_INITS
