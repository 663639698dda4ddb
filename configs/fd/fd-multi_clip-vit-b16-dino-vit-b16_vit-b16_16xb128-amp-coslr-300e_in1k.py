# Multi-teacher FD: CLIP ViT-B/16 + DINO ViT-B/16 -> one ViT-B/16 student (not in the
# paper; the AM-RADIO / UNIC idea on FD's whitened targets). Both teachers are /16, so
# both see the 224 px crop, each with its own statistics (CLIP's, ImageNet's); each
# has its own 1x1 head and whitened Smooth-L1 loss, logged as loss_clip / loss_dino and
# summed with weights 1 : 1. The checkpoint holds the student and both heads; it
# converts for fine-tuning exactly like a single-teacher one.
# Recipe: the CLIP-B row (drop path 0.2, lr 3e-4 per 512, 300 epochs).
_base_ = ['./fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
model = dict(
    teacher=None,
    teachers=dict(
        clip=_base_.model.teacher,  # clip_vitb.py's CLIP-B/16
        dino=dict(
            type='DINOTeacher',
            arch='dino_vitb16',
            checkpoint='checkpoints/dino/dino_vitbase16_pretrain.pth')),
    loss_weights=dict(clip=1.0, dino=1.0))
