# Demo, contrastive track, step 2: Feature Distillation from the MoCo v3 teacher
# (moco_vit_digits.py) into an FDViT student. Everything but the teacher is the
# supervised track's FD step (fd_deit_digits.py): same student, recipe, crops and
# schedule. The teacher is MoCo's online backbone (MMPretrainTeacher keeps the
# checkpoint's `backbone.` weights only: the projector, predictor and momentum
# encoder are left out), its tokens taken after its final norm.
#   python tools/train.py configs/demo/fd_moco_digits.py --cfg-options \
#       model.teacher.checkpoint=MOCO.pth train_dataloader.dataset.data_root=DATA
_base_ = ['./fd_deit_digits.py']
model = dict(
    teacher=dict(
        config='configs/demo/moco_vit_digits.py',
        checkpoint='work_dirs/demo/contrastive/teacher/epoch_20.pth'))
