# FD: DINOv3 ViT-B/16 (LVD-1689M) -> ViT-B/16 student (a modern teacher; not in the
# paper). Both are /16, so the grids match at 224 with no resizing; the teacher's
# RoPE positions need no resampling (its native 256 px is only the pretrained
# config's size). Its 4 storage tokens are not regressed. Recipe: the DINO row.
# Weights: Meta's official dinov3_vitb16_pretrain_lvd1689m-*.pth (DINOv3 licence),
# converted by timm's checkpoint filter at load.
_base_ = ['./fd_dinov2-vit-b14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k.py']
teacher_checkpoint = 'checkpoints/dinov3/dinov3_vitb16_pretrain_lvd1689m.pth'
model = dict(teacher=dict(model='vit_base_patch16_dinov3.lvd1689m', checkpoint=teacher_checkpoint))
