# FD with a ViT-L/14 student (16x16 tokens + CLS at 224, like a CLIP ViT-L/14).
model = dict(
    type='FeatureDistiller',
    input_size=224,
    align='resize_input',
    include_cls=True,
    backbone=dict(type='FDViT', arch='large', img_size=224, patch_size=14, drop_path_rate=0.3),
    head=dict(type='FDHead', beta=2.0),
)
