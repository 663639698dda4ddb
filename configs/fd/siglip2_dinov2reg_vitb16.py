# Multi-teacher FD with modern teachers: SigLIP 2 B/16 (image-text, no CLS: patch
# target) + DINOv2-B/14 with registers (self-supervised; fed 196 px so its 14x14 map
# matches, registers not regressed) -> one ViT-B/16 student. Not in the paper.
# Each teacher has its own statistics (0.5/0.5 and ImageNet's), head and loss
# (loss_siglip, loss_dinov2, weights 1 : 1). Recipe: the CLIP-B row.
_base_ = ['./clip_vitb.py']
model = dict(
    teacher=None,
    teachers=dict(
        siglip=dict(
            type='TimmTeacher',
            model='vit_base_patch16_siglip_224.v2_webli',
            checkpoint='checkpoints/siglip2/vit_base_patch16_siglip_224.v2_webli.safetensors'),
        dinov2=dict(
            type='TimmTeacher',
            model='vit_base_patch14_reg4_dinov2.lvd142m',
            checkpoint='checkpoints/dinov2/dinov2_vitb14_reg4_pretrain.pth')),
    loss_weights=dict(siglip=1.0, dinov2=1.0))
