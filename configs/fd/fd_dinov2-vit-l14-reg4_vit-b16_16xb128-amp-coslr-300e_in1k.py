# FD from a LARGER teacher: DINOv2 ViT-L/14 with 4 registers -> ViT-B/16 student.
# Not in the paper. The /14 teacher sees 196 px (align='resize_input'), so its 14x14
# map matches the student's; the head projects 768 -> 1024 channels; registers are
# not regressed. Recipe: the release's DINO row (drop path 0.3).
# Weights: DINOv2's official dinov2_vitl14_reg4_pretrain.pth (Apache-2.0).
_base_ = ['./fd_dinov2-vit-b14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k.py']
teacher_checkpoint = 'checkpoints/dinov2/dinov2_vitl14_reg4_pretrain.pth'
model = dict(
    teacher=dict(model='vit_large_patch14_reg4_dinov2.lvd142m', checkpoint=teacher_checkpoint))
