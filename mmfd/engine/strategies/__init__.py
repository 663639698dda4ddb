from .fsdp2 import FSDP2Strategy, memory_report  # noqa: F401  (registers FSDP2Strategy)
from .sharded_checkpoint import consolidate, verify_sharded_checkpoint  # noqa: F401
