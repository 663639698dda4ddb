"""The interface every FD teacher implements.

A teacher is a frozen feature extractor: it maps images (normalised with the
teacher's OWN ``mean``/``std``) to its last-layer token map after its final norm.
The FD algorithm reads ``mean``, ``std``, ``patch_size``, ``embed_dim`` and
``has_cls`` to align inputs and grids without knowing the family.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule


class TeacherOutput(NamedTuple):
    tokens: torch.Tensor  # [B, N, C]; CLS first when has_cls
    grid: Tuple[int, int]  # (h, w) of the patch tokens
    has_cls: bool


IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# CLIP's statistics, in the same 0-255 pixel scale mmpretrain's preprocessors use.
CLIP_MEAN = tuple(255 * m for m in (0.48145466, 0.4578275, 0.40821073))
CLIP_STD = tuple(255 * s for s in (0.26862954, 0.26130258, 0.27577711))


class BaseTeacher(BaseModule):
    """Frozen, always-eval teacher.

    Subclasses build their network in ``__init__``, load ``checkpoint`` and call
    :meth:`freeze`; they implement :meth:`forward_tokens`.

    Attributes (set by subclasses):
        embed_dim (int): channels of the token map.
        patch_size (int): pixels per token along each side (the stride of the map).
        img_size (int): the input size the teacher was trained at.
        has_cls (bool): whether ``tokens[:, 0]`` is a CLS token.
        mean, std (tuple): the RGB input statistics it expects, 0-255 scale.
    """
    embed_dim: int
    patch_size: int
    img_size: int = 224
    has_cls: bool = True
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def __init__(self, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)

    def freeze(self) -> None:
        """No gradients, eval mode (no dropout / drop path), forever."""
        for param in self.parameters():
            param.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        # The runner calls model.train() every epoch: a teacher must never leave eval.
        return super().train(False)

    def init_weights(self):
        # Weights come from the teacher's checkpoint, never from mmengine's init.
        pass

    def final_norm_module(self) -> Optional[torch.nn.Module]:
        """The norm applied last to the token map (CLIP ``ln_post``, ViT/Swin
        ``norm``), or None when the family has none to skip."""
        return None

    def use_final_norm(self, enabled: bool = True) -> None:
        """The paper regresses the tokens AFTER the teacher's final norm (default).
        ``use_final_norm(False)`` makes the final norm an identity by a forward hook,
        so the tokens before it become the target (an ablation)."""
        handle = getattr(self, '_skip_norm_handle', None)
        if handle is not None:
            handle.remove()
            self._skip_norm_handle = None
        if enabled:
            return
        module = self.final_norm_module()
        if module is None:
            from mmfd.utils.errors import ConfigError
            raise ConfigError(f'{type(self).__name__} has no final norm to skip: '
                              'set model.target_after_final_norm=True.')
        self._skip_norm_handle = module.register_forward_hook(
            lambda _module, args, _output: args[0])

    def adapt_img_size(self, img_size: int) -> bool:
        """Makes the teacher take ``img_size`` inputs, once, at build (FD calls it for
        ``align='resize_input'`` when the config leaves ``teacher.img_size`` unset).

        Returns True when the teacher changed. Teachers with an absolute position
        table resample it (see ``pos_embed_resize``); the default changes nothing:
        a teacher that accepts any size needs nothing, one that does not says so at
        its first forward.
        """
        return False

    def grid_size(self, input_hw: Tuple[int, int]) -> Tuple[int, int]:
        """Token grid produced for an input of ``input_hw`` pixels."""
        return input_hw[0] // self.patch_size, input_hw[1] // self.patch_size

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] (teacher-normalised) -> [B, N, C] after the final norm."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> TeacherOutput:
        tokens = self.forward_tokens(images)
        return TeacherOutput(tokens, self.grid_size(images.shape[-2:]), self.has_cls)
