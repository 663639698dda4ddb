# tiny_fd with two teachers: the patch-8 ViT (ImageNet statistics, 48 wide) and a
# patch-16 CLIP tower (CLIP statistics, 64 wide); checkpoints set by the test.
_base_ = ['./tiny_fd.py']
model = dict(
    teacher=None,
    teachers=dict(
        vit=dict(
            type='ViTTeacher',
            img_size=32,
            checkpoint='SET_BY_TEST',
            arch=dict(patch_size=8, embed_dim=48, depth=2, num_heads=2)),
        clip=dict(
            type='CLIPTeacher',
            checkpoint='SET_BY_TEST',
            arch=dict(
                embed_dim=32, vision_cfg=dict(image_size=64, layers=2, width=64, patch_size=16)))),
    loss_weights=dict(vit=1.0, clip=1.0))
