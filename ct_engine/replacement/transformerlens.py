"""TransformerLens backend: TransformerLens 4's ``TransformerBridge`` over a Hugging Face model.

The bridge runs the Hugging Face modules with TransformerLens hook points around them. With
``enable_compatibility_mode(no_processing=True)`` weights keep their Hugging Face meaning (no
LayerNorm folding, no centering), and the classic hook names are available. We use hooks for
everything the replacement model needs:

* stop-gradients: ``blocks.l.attn.hook_pattern`` and every norm's ``hook_scale`` (the bridge
  then rebuilds the norm output from the detached scale);
* the transcoder input ``x_l`` (cached) and the MLP output ``y_l`` at the transcoder's hooks,
  replaced by ``skip(x_l) + (y_l - skip(x_l)).detach()`` so that gradients reach earlier layers
  only through the linear skip path;
* the embedding output, re-created as a leaf so the graph exists although no parameter
  requires grad, and the final-norm output, where the forward stops (logit targets are read
  before the unembedding, so Gemma-2's softcap never enters the gradient).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from ct_engine.replacement.backend import (
    CleanRun,
    CleanRunMixin,
    FrozenRun,
    broadcast_mlp_output,
)
from ct_engine.replacement.edits import ForwardEdits, Pins, pin_prefix
from ct_engine.replacement.hooks import (
    BLOCK_NORMS,
    EMBED_HOOK,
    FINAL_NORM_OUT_HOOK,
    FINAL_NORM_SCALE_HOOK,
    attention_pattern_hook,
    block_hook,
    norm_scale_hook,
    unknown_hook_message,
)
from ct_engine.transcoders import TranscoderFormatError, Transcoders


class _StopForward(Exception):
    """Raised from the final-norm hook: nothing after it is needed."""


def _architecture(cfg) -> str:
    return cfg.original_architecture or getattr(cfg, "architecture", None) or "model"


def _detach(tensor: torch.Tensor, hook) -> torch.Tensor:
    return tensor.detach()


class TransformerLensBackend(CleanRunMixin):
    """Runs clean and frozen forward passes of a ``TransformerBridge``.

    Args:
        bridge: a booted bridge (see :meth:`load`).
        transcoders: the transcoders whose hooks define the feature input/output sites.
    """

    name = "transformerlens"

    def __init__(self, bridge, transcoders: Transcoders):
        self.bridge = bridge
        self.transcoders = transcoders
        cfg = bridge.cfg
        self.n_layers: int = int(cfg.n_layers)
        self.d_model: int = int(cfg.d_model)
        self.d_vocab: int = int(cfg.d_vocab)
        self.n_ctx: int = int(cfg.n_ctx)
        hook_names = set(bridge.hook_dict)
        self.input_hooks = [
            block_hook(i, transcoders.feature_input_hook) for i in range(self.n_layers)
        ]
        self.output_hooks = [
            block_hook(i, transcoders.feature_output_hook) for i in range(self.n_layers)
        ]
        for key, name in (
            ("feature_input_hook", self.input_hooks[0]),
            ("feature_output_hook", self.output_hooks[0]),
        ):
            if name not in hook_names:
                raise TranscoderFormatError(
                    unknown_hook_message(
                        name.split(".", 2)[2],
                        f"{cfg.model_name}, a {_architecture(cfg)}",
                        [h.split(".", 2)[2] for h in hook_names if h.startswith("blocks.0.")],
                    ),
                    key=key,
                )
        # Stop-gradient sites: attention probabilities and every norm scale.
        self.attention_hooks = [attention_pattern_hook(i) for i in range(self.n_layers)]
        self.norm_scale_hooks = [
            norm_scale_hook(i, norm)
            for i in range(self.n_layers)
            for norm in BLOCK_NORMS
            if norm_scale_hook(i, norm) in hook_names
        ]
        self.norm_scale_hooks.append(FINAL_NORM_SCALE_HOOK)
        self.freeze_hooks = self.attention_hooks + self.norm_scale_hooks

    @classmethod
    def load(
        cls,
        model_name_or_dir: str,
        transcoders_loader,
        *,
        device: torch.device,
        dtype: torch.dtype,
    ) -> TransformerLensBackend:
        """Boot a bridge for ``model_name_or_dir``; ``transcoders_loader(d_model, n_layers)``
        returns the transcoders once the model's shape is known."""
        from transformer_lens.model_bridge import TransformerBridge

        with _quiet():
            bridge = TransformerBridge.boot_transformers(
                str(model_name_or_dir), device=str(device), dtype=dtype
            )
            bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
        bridge.eval()
        for p in bridge.parameters():
            p.requires_grad_(False)
        transcoders = transcoders_loader(int(bridge.cfg.d_model), int(bridge.cfg.n_layers))
        return cls(bridge, transcoders)

    # -- model facts ------------------------------------------------------------------------

    @property
    def model(self):
        """The ``TransformerBridge`` (hooks, ``run_with_cache``, ...)."""
        return self.bridge

    @property
    def hf_model(self):
        return self.bridge.original_model

    @property
    def tokenizer(self):
        return self.bridge.tokenizer

    @property
    def unembedding(self) -> torch.Tensor:
        """``(D, V)`` unembedding (the transpose of the Hugging Face ``lm_head`` weight)."""
        return self.hf_model.get_output_embeddings().weight.T

    @contextlib.contextmanager
    def zero_softcap(self) -> Iterator[None]:
        """Temporarily disable the final logit softcap (Gemma-2), as circuit-tracer does."""
        cfg = self.bridge.cfg
        hf_cfg = self.hf_model.config
        saved = (getattr(cfg, "output_logits_soft_cap", None), hf_cfg.final_logit_softcapping)
        cfg.output_logits_soft_cap = 0.0
        hf_cfg.final_logit_softcapping = None
        try:
            yield
        finally:
            cfg.output_logits_soft_cap, hf_cfg.final_logit_softcapping = saved

    # -- forward passes ---------------------------------------------------------------------

    def _run(self, tokens: torch.Tensor, hooks: list, *, stop_early: bool) -> torch.Tensor | None:
        with _quiet(), self.bridge.hooks(fwd_hooks=hooks):
            try:
                return self.bridge(tokens, return_type="logits", prepend_bos=False)
            except _StopForward:
                if not stop_early:
                    raise
                return None

    def _clean_forward(self, tokens: torch.Tensor) -> tuple[CleanRun, dict[str, torch.Tensor]]:
        """A clean run plus the values that freezing pins (hook name -> tensor)."""
        L = self.n_layers
        inputs: list[torch.Tensor | None] = [None] * L
        outputs: list[torch.Tensor | None] = [None] * L
        embed: list[torch.Tensor] = []
        pinned: dict[str, torch.Tensor] = {}

        def pin(t, hook, name=None):
            pinned[name] = t.detach()
            return pinned[name]  # a detached edit: the same numerics as the frozen run

        hooks = [(name, _bind(pin, name=name)) for name in self.freeze_hooks]
        hooks.append((EMBED_HOOK, lambda t, hook: embed.append(t)))
        for layer in range(L):
            hooks.append((self.input_hooks[layer], _store(inputs, layer)))
            hooks.append((self.output_hooks[layer], _store(outputs, layer)))
        mlps: list[object] = [None] * L
        with torch.no_grad(), self._recorded_mlps(mlps):
            logits = self._run(tokens[None], hooks, stop_early=False)
        clean = CleanRun(
            logits=logits[0],
            feature_inputs=torch.stack(inputs)[:, 0],
            feature_outputs=torch.stack(outputs)[:, 0],
            embeddings=embed[0][0],
            mlp_outputs=_stacked_mlp_outputs(mlps, logits.shape[1], self.d_model),
        )
        return clean, pinned

    def _mlp_modules(self) -> list[torch.nn.Module] | None:
        """Each block's Hugging Face MLP as the bridge calls it (between the MLP's
        ``hook_in`` and ``hook_out``), or ``None`` where a bridge computes its MLP otherwise
        (processed weights) or has no MLP module of its own."""
        modules = []
        for block in self.bridge.blocks:
            bridge_mlp = getattr(block, "mlp", None)
            module = getattr(bridge_mlp, "original_component", None)
            if not isinstance(module, torch.nn.Module) or getattr(
                bridge_mlp, "_use_processed_weights", False
            ):
                return None
            modules.append(module)
        return modules

    @contextlib.contextmanager
    def _recorded_mlps(self, outputs: list) -> Iterator[None]:
        """Record what each MLP module returns into ``outputs[layer]``."""
        modules = self._mlp_modules()
        if modules is None:
            yield
            return

        def recorder(forward, layer):
            def fn(*args, **kwargs):
                outputs[layer] = forward(*args, **kwargs)
                return outputs[layer]

            return fn

        with _forwards_replaced(modules, [recorder(m.forward, i) for i, m in enumerate(modules)]):
            yield

    @contextlib.contextmanager
    def _skipped_mlps(self, mlp_outputs: torch.Tensor | None, tokens) -> Iterator[None]:
        """MLP modules that return their clean outputs instead of running."""
        modules = self._mlp_modules() if mlp_outputs is not None else None
        if modules is None:
            yield
            return

        def constant(layer):
            value = broadcast_mlp_output(mlp_outputs, layer, tokens)
            return lambda *args, **kwargs: value

        with _forwards_replaced(modules, [constant(i) for i in range(len(modules))]):
            yield

    def frozen_run(
        self, tokens: torch.Tensor, mlp_outputs: torch.Tensor | None = None
    ) -> FrozenRun:
        """Forward ``tokens (B, T)`` building the linearized autograd graph (see module doc);
        with ``mlp_outputs (L, >= T, D)`` the MLP modules are skipped
        (:meth:`~ct_engine.replacement.backend.Backend.frozen_run`)."""
        L = self.n_layers
        inputs: list[torch.Tensor | None] = [None] * L
        outputs: list[torch.Tensor | None] = [None] * L
        leaves: dict[str, torch.Tensor] = {}

        def embed_leaf(t, hook):
            leaves["embed"] = t.detach().requires_grad_(True)
            return leaves["embed"]

        def replace_output(layer):
            def hook_fn(t, hook):
                skip = self.transcoders.compute_skip(layer, inputs[layer])
                if skip is None:
                    y = t.detach().requires_grad_(True)
                else:
                    skip = skip.to(t.dtype)
                    y = skip + (t - skip).detach()
                outputs[layer] = y
                return y

            return hook_fn

        def final(t, hook):
            leaves["final"] = t
            raise _StopForward

        hooks = [(name, _detach) for name in self.freeze_hooks]
        hooks.append((EMBED_HOOK, embed_leaf))
        for layer in range(L):
            hooks.append((self.input_hooks[layer], _store(inputs, layer)))
            hooks.append((self.output_hooks[layer], replace_output(layer)))
        hooks.append((FINAL_NORM_OUT_HOOK, final))
        with torch.enable_grad(), self._skipped_mlps(mlp_outputs, tokens):
            self._run(tokens, hooks, stop_early=True)
        return FrozenRun(
            feature_inputs=inputs,
            feature_outputs=outputs,
            embeddings=leaves["embed"],
            final_residual=leaves["final"],
        )

    def edited_run(self, tokens: torch.Tensor, edits: ForwardEdits, pins: Pins | None = None):
        """No-grad forward of ``tokens (B, T)`` with ``edits`` called at every site.

        Args:
            tokens: ``(B, T)``.
            edits: callbacks, see :class:`~ct_engine.replacement.edits.ForwardEdits`.
            pins: pin attention patterns and/or norm scales to a clean run's values (on the
                clean run's leading positions).

        Returns:
            logits ``(B, T, V)`` (softcap applied where the model has one).
        """
        L = self.n_layers
        hooks = []
        if pins is not None:
            for name, clean in pins.values().items():
                hooks.append((name, _bind(_pin, clean=clean)))
        hooks.append((EMBED_HOOK, lambda t, hook: edits.embed(t)))
        for layer in range(L):
            hooks.append(
                (self.input_hooks[layer], lambda t, hook, i=layer: edits.feature_input(i, t))
            )
            hooks.append(
                (self.output_hooks[layer], lambda t, hook, i=layer: edits.feature_output(i, t))
            )
        hooks.append((FINAL_NORM_OUT_HOOK, lambda t, hook: edits.final_residual(t)))
        with torch.no_grad():
            return self._run(tokens, hooks, stop_early=False)


@contextlib.contextmanager
def _forwards_replaced(modules: list[torch.nn.Module], forwards: list) -> Iterator[None]:
    """Give each module another ``forward`` (an instance attribute) for a while."""
    saved = [m.__dict__.get("forward") for m in modules]
    for module, forward in zip(modules, forwards, strict=True):
        module.forward = forward
    try:
        yield
    finally:
        for module, old in zip(modules, saved, strict=True):
            if old is None:
                del module.forward
            else:
                module.forward = old


def _stacked_mlp_outputs(outputs: list, n_pos: int, d_model: int) -> torch.Tensor | None:
    """``(L, T, D)`` from one recorded ``(1, T, D)`` tensor per MLP, or ``None`` when an MLP
    returned anything else (a tuple with router scores, say) or was not called."""
    if not all(isinstance(o, torch.Tensor) and o.shape == (1, n_pos, d_model) for o in outputs):
        return None
    return torch.stack(outputs)[:, 0]


def _pin(t: torch.Tensor, hook, clean: torch.Tensor) -> torch.Tensor:
    return pin_prefix(t, clean.to(t.dtype))


def _bind(fn, **kwargs):
    def hook_fn(t, hook):
        return fn(t, hook, **kwargs)

    return hook_fn


def _store(buffer: list, index: int):
    def hook_fn(t, hook):
        buffer[index] = t

    return hook_fn


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the bridge's per-call notes about rebuilding norms from hooked scales."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*hook_scale/hook_normalized.*")
        warnings.filterwarnings("ignore", message=".*center_unembed.*")
        yield
