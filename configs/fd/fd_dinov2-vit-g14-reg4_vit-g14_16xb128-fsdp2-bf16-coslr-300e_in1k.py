# FD at billion scale, sharded: DINOv2 ViT-g/14 with 4 registers (1.1 B, frozen) ->
# ViT-g/14 student (1.0 B: width 1408, 40 blocks, 16 heads, MLP 6144, the ViT-g/14
# shape of Zhai et al.), the size class of the paper's SwinV2-G run. Not in the paper.
# FSDP2 shards the student per block and, here, the teacher too (shard_teacher).
# Geometry: both /14 at 224 px, 16x16 patches + CLS; registers are not regressed;
# the head projects 1408 -> 1536. Drop path 0.3 (the CLIP-L recipe; the release has
# no giant ViT value).
# Per GPU at the paper's batch (128 per GPU on 16 GPUs; estimate_fsdp_memory.py):
# student weights + gradients + AdamW state 15.0 GiB under DDP, 0.95 GiB under FSDP2
# (+ one gathered bf16 block, 48 MiB); the teacher 4.2 GiB replicated, 0.26 GiB
# sharded. Activations with checkpointing: each block's bf16 input, 128 x 257 x 1408
# x 2 B = 88 MiB per block, 3.5 GiB for 40 blocks, plus one block's working set.
# Weights: DINOv2's official dinov2_vitg14_reg4_pretrain.pth (Apache-2.0).
_base_ = ['./fd_clip-vit-l14_vit-l14_16xb128-fsdp2-bf16-coslr-300e_in1k.py']
teacher_checkpoint = 'checkpoints/dinov2/dinov2_vitg14_reg4_pretrain.pth'
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True, embed_dims=1408, num_layers=40, num_heads=16,
            feedforward_channels=6144)),
    teacher=dict(
        _delete_=True,
        type='TimmTeacher',
        model='vit_giant_patch14_reg4_dinov2.lvd142m',
        checkpoint=teacher_checkpoint))
strategy = dict(shard_teacher=True)
