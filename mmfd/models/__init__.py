from . import algorithms, backbones, heads, teachers  # noqa: F401  (registration)
