# Demo: fine-tune an FD student (of any track: tools/run_demo.py sets the checkpoint;
# a multi-teacher one converts the same way). The FD checkpoint itself is loaded
# strictly into mmpretrain's BEiTViT (configs/_base_/finetune/vit_base_p16_ft.py),
# the student converted in memory (convert='fd_vit': the shared relative position
# table copied into every block), as tools/model_converters/convert_fd_checkpoint.py would write it.
_base_ = ['../_base_/finetune/vit_base_p16_ft.py', './ft_digits_recipe.py']
model = dict(
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(
        arch=dict(
            _delete_=True,  # replaces the 'base' arch name
            embed_dims={{_base_.vit_arch.embed_dims}},
            num_layers={{_base_.vit_arch.num_layers}},
            num_heads={{_base_.vit_arch.num_heads}},
            feedforward_channels={{_base_.vit_arch.feedforward_channels}}),
        img_size={{_base_.img_size}},
        patch_size={{_base_.patch_size}},
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='work_dirs/demo/supervised/fd/epoch_30.pth')),
    head={{_base_.ft_head}},
    train_cfg=dict(_delete_=True))  # no mixup / cutmix (see ft_digits_recipe.py)
