# Deprecated alias, kept for 0.2.x and removed in 0.3.0; the OpenMMLab-style name:
#   configs/fd/benchmarks/swinv2-base-w14_fd-esvit-swin-b_8xb128-coslr-100e_in1k.py
_base_ = ['../fd/benchmarks/swinv2-base-w14_fd-esvit-swin-b_8xb128-coslr-100e_in1k.py']
work_dir = 'work_dirs/swinv2-base-w14_fd-esvit-swin-b_8xb128-coslr-100e_in1k'
