# Deprecated alias, kept for 0.2.x and removed in 0.3.0; the OpenMMLab-style name:
#   configs/fd/benchmarks/vit-large-p14_fd-clip-vit-l14_8xb128-coslr-50e_in1k.py
_base_ = ['../fd/benchmarks/vit-large-p14_fd-clip-vit-l14_8xb128-coslr-50e_in1k.py']
work_dir = 'work_dirs/vit-large-p14_fd-clip-vit-l14_8xb128-coslr-50e_in1k'
