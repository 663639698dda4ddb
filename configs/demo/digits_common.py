# Shared by every step of the demo (`make demo`, tools/run_demo.py): the image size,
# the ViT geometry of the teacher and the student, and where the digits live.
# tools/run_demo.py writes scikit-learn's bundled handwritten digits (1,797 images,
# 10 classes) as 32 x 32 RGB PNGs into digits_root/{train,val}/<class>/ and points
# every config there with --cfg-options (tools/fd_demo/digits.py).
digits_root = 'work_dirs/demo/data/digits'
img_size = 32
patch_size = 4  # 8 x 8 patch grid + CLS
num_classes = 10
# The same size class for the supervised teacher (mmpretrain VisionTransformer)
# and the FD student (FDViT = BEiTViT with one shared relative position bias).
vit_arch = dict(embed_dims=96, num_layers=4, num_heads=4, feedforward_channels=384)
batch_size = 64
# ImageNet mean/std (0-255 RGB), as DeiT: teacher and student see the same view.
mean = [123.675, 116.28, 103.53]
std = [58.395, 57.12, 57.375]
