# A tiny FD step for benchmarks on small machines (tools/analysis_tools/benchmark_fd.py): a 4-block
# ViT teacher and FDViT student, 192 wide, patch 16 at 96 px (6x6 tokens + CLS),
# same grid on both sides (no alignment resize), random teacher weights.
_base_ = ['../fd/fd_deit-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
input_size = 96
model = dict(
    input_size=input_size,
    backbone=dict(
        arch=dict(
            _delete_=True, embed_dims=192, num_layers=4, num_heads=3, feedforward_channels=768),
        img_size=input_size),
    teacher=dict(
        arch=dict(_delete_=True, patch_size=16, embed_dim=192, depth=4, num_heads=3),
        img_size=input_size,
        checkpoint=None,
        allow_random_init=True))
