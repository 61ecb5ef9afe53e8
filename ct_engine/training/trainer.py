"""The training loop shared by per-layer and cross-layer JumpReLU transcoders.

Loss per batch (normalized activations, see :mod:`.normalization`), summed over layers:

``Σ_j E‖ỹ_j − ŷ_j‖² / Var(ỹ_j)  +  λ(t) · Σ_i E[L0_i]  +  μ · Σ_i E Σ_f relu(θ_if − z_if)``

* the first term is a per-output-layer FVU estimate (PLT: ``j`` = each layer; CLT: each output
  layer receives all sources ``i ≤ j``);
* ``L0_i = Σ_f 1[z_if > θ_if]`` with the straight-through pseudo-derivative for ``θ``
  (:mod:`.jumprelu`); ``λ(t)`` ramps up linearly over the first ``sparsity_warmup`` of steps;
* the last, small term (Anthropic's "pre-activation loss", with unit-norm decoders) pulls
  features whose pre-activations stay below threshold back up, so fewer die.

Adam; the learning rate decays linearly to zero over the last ``lr_decay`` of the steps.
Decoder rows are re-projected to unit norm after every step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .collection import ActivationData
from .jumprelu import jumprelu
from .jumprelu import step as heaviside
from .modules import TRAINABLE, TrainableTranscoders
from .normalization import Normalization, compute_normalization


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        kind: ``"plt"`` or ``"clt"``.
        n_features: ``F`` per layer.
        steps: optimizer steps.
        batch_size: positions per step (all layers of a position together).
        lr: Adam learning rate.
        l0_coefficient: ``λ``, weight of the per-layer L0 relative to the per-layer FVU.
        sparsity_warmup: fraction of the steps over which ``λ`` ramps up from 0.
        lr_decay: final fraction of the steps over which the learning rate decays to 0.
        preact_coefficient: ``μ`` of the pre-activation loss.
        threshold_init: initial JumpReLU threshold in units of the initial pre-activation
            scale (1.0: about 16% of the features active at first).
        init_output_fraction: share of the target variance the initial features write.
        bandwidth: pseudo-derivative kernel width ``ε``.
        threshold_lr_scale: learning-rate multiplier of the (log) thresholds, which otherwise
            move too slowly for short runs.
        seed: seeds the initialization and the batch order.
        threads: torch CPU threads during training (fixed for reproducibility).
    """

    kind: str = "plt"
    n_features: int = 1024
    steps: int = 800
    batch_size: int = 1024
    lr: float = 2e-3
    l0_coefficient: float = 4e-3
    sparsity_warmup: float = 0.3
    lr_decay: float = 0.2
    preact_coefficient: float = 1e-4
    threshold_init: float = 1.0
    init_output_fraction: float = 0.25
    bandwidth: float = 0.05
    threshold_lr_scale: float = 3.0
    seed: int = 0
    threads: int = 2


@dataclass
class TrainingHistory:
    """Losses logged every ``every`` steps: ``(step, fvu (mean over layers), l0 (mean))``."""

    every: int
    steps: list[int] = field(default_factory=list)
    fvu: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)


@dataclass
class TrainedModule:
    """A trained module with the normalization it was trained under."""

    module: TrainableTranscoders
    normalization: Normalization
    history: TrainingHistory
    train_seconds: float


def _lr_factor(step: int, steps: int, decay: float) -> float:
    start = int(steps * (1 - decay))
    if step < start:
        return 1.0
    return max(0.0, (steps - step) / max(steps - start, 1))


@torch.no_grad()
def _initialize(
    module: TrainableTranscoders, data: ActivationData, norm: Normalization, config: TrainConfig
) -> None:
    """Tied init, then scale encoders (and thresholds) by one factor ``c`` so that the initial
    features write ``init_output_fraction`` of the target variance: unit-norm decoders with
    unit encoders would start far too loud (FVU ≫ 1) and the thresholds would then shoot up
    and kill most features. ``θ₀ = c · threshold_init``, so the initial active share is that
    of ``N(0, 1) > threshold_init`` whatever ``c``."""
    module.initialize(norm.y_mean, encoder_scale=1.0)
    module.log_threshold.fill_(math.log(config.threshold_init))
    x = data.x[:2048] / norm.x_scale[None, :, None]
    acts = jumprelu(module.pre_activations(x), module.threshold, module.bandwidth)
    energy = (module.decode(acts) - module.b_dec).pow(2).sum(-1).mean(0).sum()
    scale = math.sqrt(config.init_output_fraction * float(norm.y_variance.sum()) / float(energy))
    scale = min(scale, 1.0)
    module.W_enc.mul_(scale)
    module.log_threshold.add_(math.log(scale))


def train_module(
    data: ActivationData, config: TrainConfig, *, progress: bool = True, log_every: int = 25
) -> TrainedModule:
    """Train a :class:`TrainablePLT` or :class:`TrainableCLT` on ``data`` (see module doc).

    Deterministic for a fixed ``config`` (seed, threads) and data.
    """
    if config.kind not in TRAINABLE:
        raise ValueError(f"unknown kind {config.kind!r}; expected one of {sorted(TRAINABLE)}")
    if len(data.x) == 0:
        raise ValueError("no training positions")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(data, config, progress, log_every)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    data: ActivationData, config: TrainConfig, progress: bool, log_every: int
) -> TrainedModule:
    start_time = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    norm = compute_normalization(data.x, data.y)
    module = TRAINABLE[config.kind](
        data.n_layers,
        data.d_model,
        config.n_features,
        threshold=config.threshold_init,
        bandwidth=config.bandwidth,
        generator=generator,
    )
    _initialize(module, data, norm, config)
    thresholds = [module.log_threshold]
    others = [p for name, p in module.named_parameters() if name != "log_threshold"]
    optimizer = torch.optim.Adam(
        [
            {"params": others, "lr": config.lr},
            {"params": thresholds, "lr": config.lr * config.threshold_lr_scale},
        ]
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, config.steps, config.lr_decay)
    )
    x_div = norm.x_scale[None, :, None]
    y_div = norm.y_scale[None, :, None]
    warmup = max(int(config.sparsity_warmup * config.steps), 1)
    history = TrainingHistory(every=log_every)
    n_rows, batch = len(data.x), min(config.batch_size, len(data.x))
    order, cursor = torch.randperm(n_rows, generator=generator), 0
    bar = tqdm(range(config.steps), desc=f"train {config.kind}", disable=not progress)
    for step in bar:
        if cursor + batch > n_rows:
            order, cursor = torch.randperm(n_rows, generator=generator), 0
        index = order[cursor : cursor + batch]
        cursor += batch
        x, y = data.x[index] / x_div, data.y[index] / y_div
        z = module.pre_activations(x)
        theta = module.threshold
        acts = jumprelu(z, theta, module.bandwidth)
        recon = module.decode(acts)
        fvu = (y - recon).pow(2).sum(-1).mean(0) / norm.y_variance  # (L,)
        l0 = heaviside(z, theta, module.bandwidth).sum(-1).mean(0)  # (L,)
        preact = torch.relu(theta - z).sum(-1).mean(0)  # (L,)
        sparsity = config.l0_coefficient * min(1.0, step / warmup)
        loss = fvu.sum() + sparsity * l0.sum() + config.preact_coefficient * preact.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        module.normalize_decoder()
        if step % log_every == 0 or step == config.steps - 1:
            history.steps.append(step)
            history.fvu.append(float(fvu.detach().mean()))
            history.l0.append(float(l0.detach().mean()))
            bar.set_postfix(fvu=f"{history.fvu[-1]:.3f}", l0=f"{history.l0[-1]:.1f}")
    bar.close()
    return TrainedModule(
        module=module.eval(),
        normalization=norm,
        history=history,
        train_seconds=time.perf_counter() - start_time,
    )
