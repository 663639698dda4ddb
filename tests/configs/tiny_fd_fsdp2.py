# tiny_fd_deterministic sharded with FSDP2 (FlexibleRunner + FSDP2Strategy): 2 ranks
# must reach the weights of one process on the concatenated batch.
_base_ = ['./tiny_fd_deterministic.py']
runner_type = 'FlexibleRunner'
strategy = dict(type='FSDP2Strategy')
