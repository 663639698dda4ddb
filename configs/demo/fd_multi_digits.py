# Demo, multi-teacher track: ONE FDViT student distilled from BOTH teachers, the
# supervised DeiT-style ViT (teacher_deit_digits.py) and the MoCo v3 ViT
# (moco_vit_digits.py). Each teacher gets its own FD head and whitened Smooth-L1
# loss (logged as loss_sup / loss_moco), summed 1 : 1; everything else is the
# single-teacher FD step (fd_deit_digits.py). The checkpoint holds the student and
# both heads and fine-tunes like a single-teacher one (ft_fd_student_digits.py).
#   python tools/train.py configs/demo/fd_multi_digits.py --cfg-options \
#       model.teachers.sup.checkpoint=SUP.pth model.teachers.moco.checkpoint=MOCO.pth \
#       train_dataloader.dataset.data_root=DATA
_base_ = ['./fd_deit_digits.py']
model = dict(
    teacher=None,
    teachers=dict(
        sup=_base_.model.teacher,  # fd_deit_digits.py's supervised teacher
        moco=dict(
            type='MMPretrainTeacher',
            config='configs/demo/moco_vit_digits.py',
            checkpoint='work_dirs/demo/contrastive/teacher/epoch_20.pth')),
    loss_weights=dict(sup=1.0, moco=1.0))
