# The ViT-B/16 distilled by FD as a downstream backbone, shared by the ImageNet
# fine-tune, mmdet and mmseg configs: mmpretrain's BEiTViT with one relative position
# table per block (copied from the FD student's shared table, and resized to the
# backbone's grid, when the FD checkpoint is loaded), layer scale 0.1, q/v biases.
# A config uses it as `backbone=dict(_base_.fd_vit_backbone, _delete_=True, ...)`,
# overriding img_size, drop_path_rate, out_type/out_indices and the checkpoint.
fd_vit_backbone = dict(
    type='mmpretrain.BEiTViT',
    arch='base',
    img_size=224,
    patch_size=16,
    drop_path_rate=0.1,
    use_abs_pos_emb=False,
    use_rel_pos_bias=True,
    use_shared_rel_pos_bias=False,
    layer_scale_init_value=0.1,
    bias='qv_bias',
    final_norm=False,
    # One drop path per residual branch, as the release: without this,
    # mmpretrain's BEiT layer drops the MLP branch twice (its FFN's own DropPath,
    # then the layer's). ffn_cfg REPLACES BEiT's default dict(add_identity=False),
    # so add_identity=False is repeated.
    layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None)),
    out_type='featmap',
    init_cfg=dict(
        type='StrictPretrained',
        # The FD training checkpoint itself: the student is converted in memory.
        checkpoint='work_dirs/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k/epoch_300.pth',
        convert='fd_vit',
        ignore_unexpected=[r'^ln1\.']))  # FD's final norm, dropped as in the release

# Parameters without weight decay beyond the 1-D ones (the decay multipliers of
# norms, biases and layer scale are 0 in every recipe).
vit_no_decay = {
    '.cls_token': dict(decay_mult=0.0),
    '.pos_embed': dict(decay_mult=0.0),
}
