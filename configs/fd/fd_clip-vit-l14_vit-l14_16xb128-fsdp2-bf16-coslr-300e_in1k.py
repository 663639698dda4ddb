# fd_clip-vit-l14_vit-l14_16xb128-amp-coslr-300e_in1k.py (CLIP ViT-L/14 -> ViT-L/14) with
# the student sharded by FSDP2: same recipe and results, less memory per GPU. Run it
# like any config:
#   tools/dist_train.sh configs/fd/fd_clip-vit-l14_vit-l14_16xb128-fsdp2-bf16-coslr-300e_in1k.py 8
# Per GPU at the paper's batch (128 per GPU, 16 GPUs; estimate_fsdp_memory.py):
# student 304 M parameters, its fp32 weights + gradients + AdamW state 4.5 GiB under
# DDP, 0.3 GiB under FSDP2 (+ one gathered bf16 block); the replicated CLIP-L
# teacher 1.1 GiB. Activations dominate at this size: bf16 with activation
# checkpointing keeps only each block's input (128 x 257 x 1024 x 2 B = 64 MiB per
# block, 1.5 GiB for 24) plus one block's working set.
_base_ = ['./fd_clip-vit-l14_vit-l14_16xb128-amp-coslr-300e_in1k.py']
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDP2Strategy',
    mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'),
    activation_checkpointing=True)
# FSDP2's bf16 needs bf16 autocast (fp16 loss scaling is per rank: refused).
optim_wrapper = dict(amp='bf16')
