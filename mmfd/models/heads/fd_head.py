"""The FD head: 1x1 projection of the student tokens, whitened teacher target,
Smooth-L1 (beta 2.0) averaged over every element (docs/method.md)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmfd.models.utils.init_checks import loads_pretrained
from mmfd.registry import MODELS
from .target_norms import build_target_norm, whiten  # noqa: F401  (whiten: public API)


@MODELS.register_module()
class FDHead(BaseModule):
    """Projection + whitening + Smooth-L1.

    Args:
        in_channels (int): student width.
        out_channels (int): teacher width.
        beta (float): Smooth-L1 transition point (2.0 in the paper).
        whiten_target (bool): standardise the target (False: raw tokens, as
            ``target_norm='none'``).
        target_norm (str): how the target is standardised: ``'layernorm'`` (the
            paper: per token), ``'running'`` (per-channel EMA statistics) or
            ``'phis'`` (PHI-S, statistics from ``TargetStatsHook``); see
            :mod:`mmfd.models.heads.target_norms`.
        target_norm_momentum (float): EMA momentum of ``'running'``.
        summary_loss_weight (float): weight of an extra cosine loss, 1 - cos, between
            the projected student CLS token and the teacher's raw CLS token (the
            summary loss of RADIO / UNIC); logged as ``loss_summary`` or
            ``loss_<teacher>_summary``. 0 (default) = off.
        eps (float): eps of the whitening LayerNorm (torch's default 1e-5).
        loss_weight (float): multiplier of the loss.
        adaptor (str): ``'linear'`` (the release's 1x1 projection) or ``'mlp'``:
            Linear -> LayerNorm -> GELU -> Linear, the adaptor multi-teacher
            distillation uses (AM-RADIO, UNIC) when a student serves several teachers.
        hidden_channels (int, optional): width of the MLP adaptor; default
            ``out_channels``.
    """
    ADAPTORS = ('linear', 'mlp')

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 beta: float = 2.0,
                 whiten_target: bool = True,
                 eps: float = 1e-5,
                 loss_weight: float = 1.0,
                 adaptor: str = 'linear',
                 hidden_channels=None,
                 target_norm: str = 'layernorm',
                 target_norm_momentum: float = 0.01,
                 summary_loss_weight: float = 0.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.beta, self.whiten_target, self.eps = beta, whiten_target, eps
        self.loss_weight = loss_weight
        self.summary_loss_weight = float(summary_loss_weight)
        self.target_norm = target_norm if whiten_target else 'none'
        # Statistics of 'running' / 'phis' are buffers: checkpoints carry them.
        self.standardizer = build_target_norm(self.target_norm, out_channels, eps,
                                              target_norm_momentum)
        if adaptor not in self.ADAPTORS:
            from mmfd.utils.errors import ConfigError
            raise ConfigError(f'FDHead: adaptor={adaptor!r} is not one of {self.ADAPTORS}.')
        self.adaptor = adaptor
        if adaptor == 'linear':
            # A per-token linear map is the release's 1x1 projection (Conv1d k=1).
            self.proj = nn.Linear(in_channels, out_channels)
        else:
            hidden = int(hidden_channels or out_channels)
            self.proj = nn.Sequential(
                nn.Linear(in_channels, hidden), nn.LayerNorm(hidden), nn.GELU(),
                nn.Linear(hidden, out_channels))

    def init_weights(self):
        super().init_weights()
        if not loads_pretrained(self.init_cfg):
            # The release's Conv1d keeps PyTorch's default init, which is nn.Linear's
            # too (kaiming-uniform weight, uniform bias, both +-1/sqrt(fan_in)).
            for module in self.proj.modules():
                if isinstance(module, (nn.Linear, nn.LayerNorm)):
                    module.reset_parameters()

    def forward(self, student_tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(student_tokens)

    def standardize(self, target: torch.Tensor) -> torch.Tensor:
        """The target the projection regresses (fp32)."""
        if self.target_norm == 'layernorm':
            return whiten(target, self.eps)
        if self.standardizer is not None:
            return self.standardizer(target)
        return target.float()

    def _pred_and_target(self, student_tokens: torch.Tensor, target: torch.Tensor):
        """The projection and the standardised target, both fp32, shapes checked."""
        pred = self.forward(student_tokens)
        if pred.shape != target.shape:
            raise ValueError(f'FDHead: prediction {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} differ (tokens x channels).')
        # Loss in fp32 even under AMP: the standardised target has unit scale.
        return pred.float(), self.standardize(target).float()

    def loss_per_sample(self, student_tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """[B]: each image's Smooth-L1 over its tokens and channels (fp32), weighted."""
        pred, target = self._pred_and_target(student_tokens, target)
        loss = F.smooth_l1_loss(pred, target, beta=self.beta, reduction='none')
        return loss.flatten(1).mean(1) * self.loss_weight

    def summary_loss(self, student_cls: torch.Tensor, teacher_cls: torch.Tensor) -> torch.Tensor:
        """Weighted 1 - cosine(projected student CLS, teacher CLS), batch mean, fp32."""
        pred = self.forward(student_cls).float()
        cos = F.cosine_similarity(pred, teacher_cls.float(), dim=-1)
        return (1 - cos).mean() * self.summary_loss_weight

    def loss(self, student_tokens: torch.Tensor, target: torch.Tensor) -> dict:
        pred, target = self._pred_and_target(student_tokens, target)
        return dict(loss=F.smooth_l1_loss(pred, target, beta=self.beta) * self.loss_weight)
