# Deprecated alias, kept for 0.2.x and removed in 0.3.0; the OpenMMLab-style name:
#   fd_dinov2-vit-b14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k.py
# Same experiment and same work dir, so the fine-tune and downstream configs find
# its checkpoint whichever name trained it.
_base_ = ['./fd_dinov2-vit-b14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k.py']
work_dir = 'work_dirs/fd_dinov2-vit-b14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k'
