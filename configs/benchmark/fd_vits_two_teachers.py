# fd_vits_deits.py with a second teacher of the same size (a DINO-S/16 layout): the cost of
# multi-teacher FD on small machines (tools/analysis_tools/benchmark_fd.py, 1 vs 2 teachers).
_base_ = ['./fd_vits_deits.py']
model = dict(
    teacher=None,
    teachers=dict(
        deit=dict(
            type='DeiTTeacher', arch='vit_small_patch16', checkpoint=None, allow_random_init=True),
        dino=dict(
            type='DINOTeacher', arch='vit_small_patch16', checkpoint=None, allow_random_init=True)))
