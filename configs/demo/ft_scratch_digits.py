# Demo, control: the FD students' architecture (FDViT, as mmpretrain's BEiTViT) and
# fine-tune recipe, but from a random initialisation: no teacher, no FD. What an FD
# student gains over this row is what distillation from its teacher brought, not
# what the architecture (relative position bias, layer scale) brings by itself.
# The initialisation of the supervised teacher (teacher_deit_digits.py).
_base_ = ['./ft_fd_student_digits.py']
model = dict(
    backbone=dict(init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ]))
