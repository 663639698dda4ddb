# Deprecated alias, kept for 0.2.x and removed in 0.3.0; the OpenMMLab-style name:
#   configs/fd/benchmarks/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k.py
_base_ = ['../fd/benchmarks/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k.py']
work_dir = 'work_dirs/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k'
