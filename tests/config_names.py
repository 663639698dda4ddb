"""The OpenMMLab-style config names and the short names they had before 0.2.0.

Tests name configs by their short name (readable tables); ``fd_config`` and
``finetune_config`` give the path of the canonical file. The short names are also
deprecated aliases in configs/ until 0.3.0 (tests/test_config_names.py checks them).
"""

# configs/fd/<short>.py -> configs/fd/<canonical>.py
FD_CONFIGS = {
    'clip_vitb':
    'fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k',
    'clip_vitb_100e':
    'fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-100e_in1k',
    'clip_vitb_vits16':
    'fd_clip-vit-b16_vit-s16_16xb128-amp-coslr-300e_in1k',
    'clip_vitl':
    'fd_clip-vit-l14_vit-l14_16xb128-amp-coslr-300e_in1k',
    'clip_vitl_fsdp2':
    'fd_clip-vit-l14_vit-l14_16xb128-fsdp2-bf16-coslr-300e_in1k',
    'deit_vitb':
    'fd_deit-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k',
    'dino_vitb':
    'fd_dino-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k',
    'esvit_swinb':
    'fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k',
    'clip_dino_vitb16':
    'fd-multi_clip-vit-b16-dino-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k',
    'dinov2_vitb14reg_vitb16':
    'fd_dinov2-vit-b14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k',
    'dinov2l_vitb16':
    'fd_dinov2-vit-l14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k',
    'dinov2g_vitg14_fsdp2':
    'fd_dinov2-vit-g14-reg4_vit-g14_16xb128-fsdp2-bf16-coslr-300e_in1k',
    'dinov3_vitb16_vitb16':
    'fd_dinov3-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k',
    'eva02clip_vitl14_vitb16':
    'fd_eva02-clip-vit-l14_vit-b16_16xb128-amp-coslr-300e_in1k',
    'pe_core_l14_vitb16':
    'fd_pe-core-vit-l14_vit-b16_16xb128-amp-coslr-300e_in1k',
    'siglip2_vitb16_vitb16':
    'fd_siglip2-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k',
    'siglip2_dinov2reg_vitb16':
    'fd-multi_siglip2-vit-b16-dinov2-vit-b14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k',
}

# configs/finetune/<short>.py -> configs/fd/benchmarks/<canonical>.py
FINETUNE_CONFIGS = {
    'clip_vitb_ft100e_in1k': 'vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k',
    'clip_vitl14_ft50e_in1k': 'vit-large-p14_fd-clip-vit-l14_8xb128-coslr-50e_in1k',
    'deit_vitb_ft100e_in1k': 'vit-base-p16_fd-deit-vit-b16_8xb128-coslr-100e_in1k',
    'dino_vitb_ft100e_in1k': 'vit-base-p16_fd-dino-vit-b16_8xb128-coslr-100e_in1k',
    'esvit_swinv2b_ft100e_in1k': 'swinv2-base-w14_fd-esvit-swin-b_8xb128-coslr-100e_in1k',
}


def fd_config(short):
    return f'configs/fd/{FD_CONFIGS[short]}.py'


def finetune_config(short):
    return f'configs/fd/benchmarks/{FINETUNE_CONFIGS[short]}.py'
