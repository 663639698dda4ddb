# Multi-teacher FD with modern teachers: SigLIP 2 B/16 (image-text, no CLS: patch
# target) + DINOv2-B/14 with registers (self-supervised; fed 196 px so its 14x14 map
# matches, registers not regressed) -> one ViT-B/16 student. Not in the paper.
# Each teacher has its own statistics (0.5/0.5 and ImageNet's), head and loss
# (loss_siglip, loss_dinov2, weights 1 : 1). Recipe: the CLIP-B row (as the SigLIP 2 config).
_base_ = ['./fd_siglip2-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
model = dict(
    teacher=None,
    teachers=dict(
        siglip=_base_.model.teacher,  # siglip2_vitb16_vitb16.py's SigLIP 2 B/16
        dinov2=dict(
            type='TimmTeacher',
            model='vit_base_patch14_reg4_dinov2.lvd142m',
            checkpoint='checkpoints/dinov2/dinov2_vitb14_reg4_pretrain.pth')),
    loss_weights=dict(siglip=1.0, dinov2=1.0))
