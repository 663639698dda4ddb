# ImageClassifier on a distilled ViT-L/14 (16x16 patches + CLS at 224).
_base_ = ['./vit_base_p16_ft.py']
model = dict(
    backbone=dict(
        arch='large',
        patch_size=14,
        drop_path_rate=0.4,
        init_cfg=dict(
            checkpoint='work_dirs/fd_clip-vit-l14_vit-l14_16xb128-amp-coslr-300e_in1k/epoch_300.pth'
        )),
    head=dict(in_channels=1024))
