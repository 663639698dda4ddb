"""Helpers of the FSDP2 tests. Imported by the training processes too
(``custom_imports``) so that the test-only hook registers there.

``RankRecordHook`` writes, per rank, ``work_dir/rank<r>.json``: every iteration's
loss as this rank computed it (its own half of the batch), the dtype the student's
first block computes in, and the bytes this rank holds
(:func:`mmfd.engine.strategies.memory_report`) once the optimizer state exists; with
``dump_state=True`` rank 0 also saves the full (gathered) student state as the run
starts, after any resume.
"""
import json
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class RankRecordHook(Hook):
    priority = 'LOWEST'

    def __init__(self, dump_state: bool = False):
        self.dump_state = dump_state
        self.losses = {}

    def before_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        model.backbone.layers[0].register_forward_hook(self._record_dtype)
        if not self.dump_state:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        state = get_model_state_dict(runner.model, options=StateDictOptions(full_state_dict=True))
        if runner.rank == 0:
            torch.save(state, osp.join(runner.work_dir, 'state_at_start.pth'))

    def _record_dtype(self, module, args, output):
        self.block_dtype = str(output.dtype)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses[runner.iter + 1] = float(outputs['loss'].detach())
        self._write(runner)

    def _write(self, runner) -> None:
        from mmfd.engine.strategies import memory_report
        record = dict(
            rank=runner.rank,
            world_size=runner.world_size,
            losses=self.losses,
            block_dtype=getattr(self, 'block_dtype', None),
            memory=memory_report(runner.model, runner.optim_wrapper.optimizer))
        path = osp.join(runner.work_dir, f'rank{runner.rank}.json')
        with open(path, 'w') as f:
            json.dump(record, f)


def read_ranks(work_dir, world_size):
    records = []
    for rank in range(world_size):
        with open(osp.join(str(work_dir), f'rank{rank}.json')) as f:
            record = json.load(f)
        record['losses'] = {int(k): v for k, v in record['losses'].items()}
        records.append(record)
    return records
