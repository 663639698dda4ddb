# FD: SigLIP 2 ViT-B/16 (224 px, WebLI) -> ViT-B/16 student (a modern teacher; not in
# the paper). SigLIP has no CLS token: the target is the 14x14 patch map only (the
# student's CLS is not regressed); cls_target='pooled' would regress the MAP head's
# pooled output in the CLS position instead. The teacher sees its own statistics
# (mean = std = 0.5, from the model's pretrained config): the ImageNet-normalised
# crop is re-normalised for it. Recipe: the release's CLIP row (drop path 0.2).
# Weights: timm's vit_base_patch16_siglip_224.v2_webli file (Apache-2.0).
_base_ = ['./fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
teacher_checkpoint = 'checkpoints/siglip2/vit_base_patch16_siglip_224.v2_webli.safetensors'
model = dict(
    teacher=dict(
        _delete_=True,
        type='TimmTeacher',
        model='vit_base_patch16_siglip_224.v2_webli',
        checkpoint=teacher_checkpoint))
