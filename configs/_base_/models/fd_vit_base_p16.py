# FD with a ViT-B/16 student (one shared relative position bias, layer scale 0.1,
# q/v biases, no absolute position embedding: see mmfd.models.backbones.FDViT).
# The teacher is set by each configs/fd/*.py file.
model = dict(
    type='FeatureDistiller',
    input_size=224,
    align='resize_input',  # teacher sees student_grid x teacher_patch pixels
    include_cls=True,
    backbone=dict(type='FDViT', arch='base', img_size=224, patch_size=16, drop_path_rate=0.1),
    head=dict(type='FDHead', beta=2.0),  # widths are inferred from student/teacher
)
