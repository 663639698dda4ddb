# FD: EVA-02-CLIP ViT-L/14 (224 px) -> ViT-B/16 student (a modern image-text
# teacher; not in the paper). The /14 teacher sees 196 px (align='resize_input') and
# OpenAI CLIP's statistics (from its pretrained config); the head projects 768 ->
# 1024 channels. Recipe: the release's CLIP rows (drop path 0.2).
# Weights: open_clip's EVA02-L-14 file (`visual.trunk.` keys, MIT licence).
_base_ = ['./fd_siglip2-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
teacher_checkpoint = 'checkpoints/eva02_clip/EVA02-L-14.safetensors'
model = dict(
    teacher=dict(model='eva02_large_patch14_clip_224.merged2b', checkpoint=teacher_checkpoint))
