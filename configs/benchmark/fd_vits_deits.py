# A ViT-S-sized FD run for benchmarks on small machines (tools/analysis_tools/benchmark_fd.py):
# DeiT-S/16 teacher -> ViT-S/16 student (384 wide, 12 blocks, 6 heads) at 224.
_base_ = ['../fd/fd_deit-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True, embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)),
    teacher=dict(arch='vit_small_patch16', checkpoint=None, allow_random_init=True))
