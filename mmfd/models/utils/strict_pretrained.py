"""``StrictPretrained``: mmengine's ``Pretrained`` init that cannot fail silently.

mmengine's ``PretrainedInit`` loads with ``strict=False``: a wrong file, a wrong
``prefix`` or a renamed module leaves the backbone random, and training goes on
from scratch with only a warning in a long log. Downstream fine-tuning of a
distilled backbone must not do that. ``StrictPretrained`` (registered in mmengine's
root ``WEIGHT_INITIALIZERS``, so every scope finds it: mmpretrain, mmdet, mmseg)
runs :func:`mmfd.checkpoint.pretrained.load_pretrained`:

* reads ``.pth`` (``torch.load(weights_only=True)``) and ``.safetensors`` files,
  local or remote (``http(s)://``, ``s3://``... through ``mmengine.fileio`` and
  ``backend_args``);
* keeps the keys under ``prefix`` (``'backbone.'``), or all keys without one; or,
  with ``convert='fd_vit'`` / ``'fd_swinv2'``, reads the FD training checkpoint
  itself and converts its student for this backbone in memory (what
  ``tools/model_converters/convert_fd_checkpoint.py`` writes to a file), for ``img_size`` (by
  default the backbone's own);
* logs what was loaded, what is missing and what is unexpected;
* raises :class:`~mmfd.utils.errors.CheckpointError`, naming the file and keys, when
  any key is missing or unexpected other than those declared in ``ignore_missing``
  / ``ignore_unexpected`` (regexes: the new parts of the downstream model, and the
  parts of the pre-trained one the recipe drops), on any shape mismatch, and when
  less than ``min_loaded`` of the module's parameters came from the file;
* keeps mmengine's order: submodules run their own ``init_weights`` first and the
  checkpoint is loaded last, as ``Pretrained`` does (mmengine special-cases only the
  literal ``'Pretrained'`` type, so this initializer runs the children itself);
* checks, at the module's first forward, that the loaded weights are still there.
  Many OpenMMLab backbones re-draw some parameters in their own ``init_weights``
  AFTER the initializers ran unless ``init_cfg['type'] == 'Pretrained'`` literally
  (mmpretrain's ``VisionTransformer`` and ``BEiTViT`` re-draw ``pos_embed``), which
  no initializer can prevent; such a model fails loudly instead of training from
  partly random weights. mmfd's own backbones and the downstream configs' (BEiTViT
  without absolute position embedding, SwinTransformerV2) keep every loaded tensor.

Usage, on the backbone::

    init_cfg=dict(type='StrictPretrained', checkpoint='work_dirs/<fd run>/epoch_300.pth',
                  convert='fd_vit', ignore_missing=[r'^ln2\\.'],
                  ignore_unexpected=[r'^ln1\\.'])
"""
import logging
from typing import List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import update_init_info
from torch import nn

from mmfd.checkpoint.pretrained import describe, load_pretrained
from mmfd.checkpoint.report import LoadReport, key_line
from mmfd.registry import WEIGHT_INITIALIZERS
from mmfd.utils.errors import CheckpointError
from .init_checks import PRETRAINED_INITS  # noqa: F401  (re-exported)

CONSEQUENCE = 'refusing to train from (partly) random weights'
# Elements sampled per loaded tensor to tell, at the first forward, whether the
# tensor still holds the file's values (a re-draw changes every one of them).
SAMPLES = 16
# Loose enough for a model cast to fp16/bf16 after loading, far tighter than any
# re-initialisation.
RTOL, ATOL = 1e-2, 1e-6


def _sample(tensor: torch.Tensor) -> Optional[torch.Tensor]:
    if not isinstance(tensor, torch.Tensor) or tensor.is_meta or tensor.numel() == 0:
        return None
    try:
        flat = tensor.detach().reshape(-1)
        index = torch.linspace(0, flat.numel() - 1, min(SAMPLES, flat.numel())).long()
        return flat[index.to(flat.device)].float().cpu()
    except (RuntimeError, NotImplementedError):  # sharded tensors (FSDP): not checked
        return None


class LoadedWeightsCheck:
    """Samples of the tensors StrictPretrained loaded, checked once at the module's
    first forward (after its own ``init_weights`` and anything else that ran).

    A later ``load_state_dict`` (mmengine's ``load_from`` / resume) replaces the
    weights on purpose and disarms the check.
    """

    def __init__(self, module: nn.Module, keys: Sequence[str], source: str):
        state = module.state_dict()
        self.samples = {}
        for key in keys:
            sample = _sample(state.get(key))
            if sample is not None:
                self.samples[key] = sample
        self.source = source
        self.done = False
        self.handles = [
            module.register_forward_pre_hook(self._on_forward),
            module.register_load_state_dict_post_hook(self._on_load),
        ]

    def __deepcopy__(self, memo):
        # A copy of the module (EMA) shares this check: whichever is forwarded
        # first runs it, and an EMA copy is never forwarded before the model.
        return self

    def changed_keys(self, module: nn.Module) -> List[str]:
        state = module.state_dict()
        changed = []
        for key, sample in self.samples.items():
            now = _sample(state.get(key))
            if now is not None and not torch.allclose(now, sample, rtol=RTOL, atol=ATOL):
                changed.append(key)
        return changed

    def _disarm(self) -> None:
        self.done = True
        for handle in self.handles:
            handle.remove()

    def _on_load(self, module, incompatible_keys) -> None:
        self._disarm()

    def _on_forward(self, module, args) -> None:
        if self.done:  # a deep copy's hooks (see __deepcopy__)
            return
        self._disarm()
        changed = self.changed_keys(module)
        if changed:
            name = type(module).__name__
            raise CheckpointError(
                f'StrictPretrained: {self.source} was loaded into {name}, but '
                f'{key_line("tensors re-initialised after loading", changed)}; '
                f'{CONSEQUENCE}. {name}.init_weights (or a later initializer) draws them '
                "again unless init_cfg['type'] is literally 'Pretrained'. Give this "
                "backbone dict(type='Pretrained', checkpoint=..., prefix=...) (mmengine's "
                'non-strict loader: check its log), or a backbone that keeps loaded '
                'weights (e.g. BEiTViT with use_abs_pos_emb=False).')


def log_report(report: LoadReport, logger='current') -> None:
    """What StrictPretrained tells the log about a successful load."""
    tag = 'StrictPretrained:'
    print_log(
        f'{tag} {report.target} <- {report.source}: loaded {len(report.loaded)} tensors '
        f'({report.fraction:.1%} of {report.total_params} parameters).',
        logger=logger)
    if report.rebuilt:
        print_log(
            f'{tag} {len(report.rebuilt)} index/coordinate buffers rebuilt by the model '
            'from its own geometry, not loaded.',
            logger=logger)
    if report.missing:
        print_log(
            f'{tag} {key_line("missing keys (left as initialised)", report.missing)}',
            logger=logger,
            level=logging.WARNING if report.bad_missing else logging.INFO)
    if report.unexpected:
        print_log(
            f'{tag} {key_line("unexpected keys (not used)", report.unexpected)}',
            logger=logger,
            level=logging.WARNING if report.bad_unexpected else logging.INFO)


@WEIGHT_INITIALIZERS.register_module(name='StrictPretrained')
class StrictPretrainedInit:
    """Initialise a module from a checkpoint, failing loudly (see module doc).

    Args:
        checkpoint (str): ``.pth`` / ``.safetensors`` file: a local path or a URL
            ``mmengine.fileio`` reads (``http(s)://``, ``s3://``...).
        prefix (str, optional): keep only keys under this prefix, stripped
            (``'backbone.'`` for mmpretrain-style files).
        convert (str, optional): ``'fd_vit'`` / ``'fd_swinv2'``: ``checkpoint`` is
            an FD training checkpoint; its student is converted for this backbone
            in memory (as ``tools/model_converters/convert_fd_checkpoint.py`` does).
        img_size (int, optional): with ``convert='fd_vit'``: the input size the
            relative position tables are resampled for. Defaults to the size the
            backbone's own tables are built for.
        ignore_missing / ignore_unexpected (list[str]): regexes of keys allowed
            to be missing from the file / unused by the model.
        min_loaded (float): fraction of the module's parameter elements that must
            come from the file. Defaults to 0.5.
        map_location (str): Defaults to 'cpu'.
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments for
            ``checkpoint`` (e.g. ``dict(backend='petrel')``).
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 convert: Optional[str] = None,
                 img_size: Optional[int] = None,
                 ignore_missing: Sequence[str] = (),
                 ignore_unexpected: Sequence[str] = (),
                 min_loaded: float = 0.5,
                 map_location: str = 'cpu',
                 backend_args: Optional[dict] = None):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.convert = convert
        self.img_size = img_size
        self.ignore_missing = list(ignore_missing)
        self.ignore_unexpected = list(ignore_unexpected)
        self.min_loaded = min_loaded
        self.map_location = map_location
        self.backend_args = backend_args

    @staticmethod
    def _init_children(module: nn.Module) -> None:
        """What BaseModule.init_weights would do after us: run it before loading so
        that it cannot overwrite the loaded weights (mmengine's order for
        'Pretrained'). Children are then marked initialised and skipped."""
        for child in module.children():
            if hasattr(child, 'init_weights') and not getattr(child, 'is_init', False):
                child.init_weights()
                if not isinstance(child, BaseModule):
                    child.is_init = True

    def __call__(self, module: nn.Module) -> None:
        self._init_children(module)
        where = describe(self.checkpoint, self.prefix, self.convert)
        print_log(f'StrictPretrained: load {type(module).__name__} from {where}', logger='current')
        report = load_pretrained(
            module,
            self.checkpoint,
            prefix=self.prefix,
            convert=self.convert,
            img_size=self.img_size,
            ignore_missing=self.ignore_missing,
            ignore_unexpected=self.ignore_unexpected,
            min_loaded=self.min_loaded,
            backend_args=self.backend_args,
            map_location=self.map_location,
            consequence=CONSEQUENCE)
        log_report(report)
        LoadedWeightsCheck(module, report.loaded, where)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=f'StrictPretrained: load from {where}')


__all__: List[str] = ['StrictPretrainedInit', 'LoadedWeightsCheck', 'log_report']
