# FD: DINOv2 ViT-B/14 with 4 registers -> ViT-B/16 student at 224 (a modern teacher;
# not in the paper). Geometry: align='resize_input' feeds the /14 teacher 196 px, so
# its 14x14 patch map matches the student's; the teacher (native 518 px) is built for
# 196 px once, its position table resampled by timm. The 4 register tokens are not
# regressed (CLS + patches). Recipe: the release's DINO row (drop path 0.3).
# Weights: DINOv2's official dinov2_vitb14_reg4_pretrain.pth (Apache-2.0), converted
# by timm's own checkpoint filter at load; nothing is downloaded.
_base_ = ['./fd_dino-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
teacher_checkpoint = 'checkpoints/dinov2/dinov2_vitb14_reg4_pretrain.pth'
model = dict(
    teacher=dict(
        _delete_=True,
        type='TimmTeacher',
        model='vit_base_patch14_reg4_dinov2.lvd142m',
        checkpoint=teacher_checkpoint))
