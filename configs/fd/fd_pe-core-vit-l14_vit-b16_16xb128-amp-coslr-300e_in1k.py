# FD: Perception Encoder PE-Core-L/14 (336 px) -> ViT-B/16 student (a modern
# image-text teacher; not in the paper). The /14 teacher is built for the 196 px that
# align='resize_input' feeds it (its absolute position table resampled once from
# 24x24 to 14x14; its RoPE needs none); statistics 0.5 / 0.5 from its pretrained
# config. Recipe: the release's CLIP rows (drop path 0.2).
# Weights: Meta's PE-Core-L14-336.pt (`visual.` keys, Apache-2.0).
_base_ = ['./fd_siglip2-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
teacher_checkpoint = 'checkpoints/pe/PE-Core-L14-336.pt'
model = dict(teacher=dict(model='vit_pe_core_large_patch14_336.fb', checkpoint=teacher_checkpoint))
