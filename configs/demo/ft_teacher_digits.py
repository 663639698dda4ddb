# Demo, the baseline of each track: fine-tune a teacher's backbone (the supervised
# ViT, or MoCo v3's online backbone: its `backbone.` weights, the same
# VisionTransformer) with the SAME recipe and head as the FD students
# (ft_digits_recipe.py): the teacher's weights, re-initialised head, mean-pooled
# patch tokens -> LayerNorm -> linear head.
#
# mmengine's non-strict `Pretrained` init, not mmfd's StrictPretrained: mmpretrain's
# VisionTransformer.init_weights re-draws `pos_embed` unless init_cfg.type is exactly
# 'Pretrained', so StrictPretrained would silently throw the teacher's position
# embedding away (tests/test_demo.py checks every backbone tensor is the teacher's).
_base_ = ['./ft_digits_recipe.py']
model = dict(
    type='ImageClassifier',
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(
        type='VisionTransformer',
        arch={{_base_.vit_arch}},
        img_size={{_base_.img_size}},
        patch_size={{_base_.patch_size}},
        drop_path_rate=0.1,
        final_norm=False,  # the teacher's final norm is dropped, as FD's is
        out_type='avg_featmap',  # mean of the patch tokens (CLS excluded) -> ln2
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/demo/supervised/teacher/epoch_30.pth',
            prefix='backbone.')),
    neck=None,
    head={{_base_.ft_head}})
