# Shared by every step of the demo (`make demo`, tools/run_demo.py): the image size,
# the ViT geometry of the teacher and the student, and where the digits live.
# tools/run_demo.py writes scikit-learn's bundled handwritten digits (1,797 images,
# 10 classes) as img_size x img_size RGB PNGs into digits_root/{train,val}/<class>/
# and points every config there with --cfg-options (tools/fd_demo/digits.py).
digits_root = 'work_dirs/demo/data/digits'
# The 8 x 8 digits upsampled 3x; patch 4 -> a 6 x 6 token grid + CLS. The cost of a
# step grows with the number of tokens: 24 px is what lets a contrastive teacher,
# two FD runs and 12 fine-tunes fit the demo's ~10 minutes on 2 CPU cores (32 px
# with patch 4 costs ~1.7x more; patch 8, a 4 x 4 grid, is cheap but the
# supervised teacher then reaches only ~85 % top-1).
img_size = 24
patch_size = 4
num_classes = 10
# The same size class for the supervised teacher (mmpretrain VisionTransformer)
# and the FD student (FDViT = BEiTViT with one shared relative position bias).
vit_arch = dict(embed_dims=96, num_layers=4, num_heads=4, feedforward_channels=384)
batch_size = 64
# ImageNet mean/std (0-255 RGB), as DeiT: teacher and student see the same view.
mean = [123.675, 116.28, 103.53]
std = [58.395, 57.12, 57.375]
