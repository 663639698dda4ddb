from . import algorithms, backbones, heads, necks, teachers, utils  # noqa: F401  (registration)
