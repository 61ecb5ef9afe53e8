"""nnsight backend: the Hugging Face model itself, traced with nnsight 0.8.

The model is loaded with ``attn_implementation="eager"`` (attention probabilities must exist as
a tensor) and wrapped in :class:`nnsight.NNsight`. Every site the replacement model needs is an
nnsight location (:mod:`ct_engine.replacement.nnsight_mapping`):

* stop-gradients: the output of ``nn.functional.dropout`` on the attention probabilities inside
  the eager attention function (reached with a recursive ``.source``), and the output of the
  ``torch.rsqrt`` inside every RMSNorm (final norm included; for Gemma inside ``_norm``), each
  replaced by its ``.detach()``;
* the transcoder input ``x_l`` (a module's ``.input``/``.output`` or an operation inside the
  norm) and the MLP output ``y_l``, replaced by ``skip(x_l) + (y_l - skip(x_l)).detach()`` so
  that gradients reach earlier layers only through the linear skip path;
* the embedding module's output, re-created as a leaf (in Transformers 5 Gemma's scaled
  embedding applies √D inside the module, so this is what enters the residual stream and the
  token vectors match the gradient site), and the final-norm output, where the frozen forward
  stops (``tracer.stop()``), so Gemma-2's logit softcap never enters the gradient.

All of this runs inside nnsight traces: the trace body asks for the locations one after the
other in execution order (:attr:`FamilyMapping.layer_sites`) and writes replacements back. No
PyTorch hook is registered. Semantics equal :class:`TransformerLensBackend`'s; the freeze
values differ only in what is stored (this backend pins ``rsqrt`` outputs, TransformerLens the
RMS itself), which is internal to a backend's own :class:`FreezeState`.

Why :class:`nnsight.NNsight` rather than ``nnsight.TransformersModel``: the model is already
loaded and only token-id tensors are traced, so the pipeline and preprocessors that
``TransformersModel`` builds are not needed, and it would re-configure the tokenizer (pad token,
left padding) that :class:`~ct_engine.replacement.model.ReplacementModel` uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from ct_engine.replacement.backend import (
    CleanRun,
    CleanRunMixin,
    FrozenRun,
    broadcast_mlp_output,
    text_config,
)
from ct_engine.replacement.edits import ForwardEdits, Pins, pin_prefix
from ct_engine.replacement.hooks import unknown_hook_message
from ct_engine.replacement.nnsight_mapping import FamilyMapping, mapping_for
from ct_engine.transcoders import TranscoderFormatError, Transcoders

# A site handler gets the value at a location and returns its replacement (or None: keep).
Handler = Callable[[torch.Tensor], torch.Tensor | None]


class NNsightBackend(CleanRunMixin):
    """Runs clean, frozen and edited forward passes of a Hugging Face model under nnsight.

    Args:
        hf_model: a Hugging Face causal LM loaded with eager attention.
        tokenizer: its tokenizer.
        transcoders: the transcoders whose hooks define the feature input/output sites.
    """

    name = "nnsight"

    def __init__(self, hf_model, tokenizer, transcoders: Transcoders):
        import nnsight

        self._hf_model = hf_model
        self._tokenizer = tokenizer
        self.transcoders = transcoders
        self.model = nnsight.NNsight(hf_model)
        cfg = text_config(hf_model.config)
        self.mapping: FamilyMapping = mapping_for(type(hf_model).__name__)
        self.n_layers: int = int(cfg.num_hidden_layers)
        self.d_model: int = int(cfg.hidden_size)
        self.d_vocab: int = int(hf_model.get_output_embeddings().weight.shape[0])
        self.n_ctx: int = int(cfg.max_position_embeddings)
        L = self.n_layers
        _layer = self.mapping.layer_location
        in_loc = self._hook_location(transcoders.feature_input_hook, "feature_input_hook")
        out_loc = self._hook_location(transcoders.feature_output_hook, "feature_output_hook")
        if in_loc == out_loc:
            raise ValueError("the transcoders' input and output hooks are the same site")
        self.input_hooks = [_layer(i, in_loc) for i in range(L)]
        self.output_hooks = [_layer(i, out_loc) for i in range(L)]
        self._flat_output = transcoders.feature_output_hook in self.mapping.flat_mlp_output
        # Stop-gradient sites: attention probabilities and every norm scale.
        self.attention_hooks = [
            _layer(i, loc)
            for i in range(L)
            for role, loc in self.mapping.layer_sites
            if role == "pattern"
        ]
        self.norm_scale_hooks = [
            _layer(i, loc)
            for i in range(L)
            for role, loc in self.mapping.layer_sites
            if role == "norm"
        ]
        self.norm_scale_hooks.append(self.mapping.final_norm_scale)
        self.freeze_hooks = self.attention_hooks + self.norm_scale_hooks
        # Each layer's MLP output, and the gate where a frozen run skips the module.
        mlp = self.mapping.mlp_output
        self.mlp_outputs = [_layer(i, mlp) for i in range(L)] if mlp else None
        self.mlp_skips = [_layer(i, _skip_location(mlp)) for i in range(L)] if mlp else None
        # Every location in execution order (a trace must request them in this order).
        order = [self.mapping.embed]
        for i in range(L):
            for _, loc in self.mapping.layer_sites:
                locations = [_skip_location(loc), loc] if loc == mlp else [loc]
                for location in locations:
                    if _layer(i, location) not in order:
                        order.append(_layer(i, location))
        order += [self.mapping.final_norm_scale, self.mapping.final_residual]
        self._order = order
        self._install_sources()

    def _hook_location(self, hook: str, key: str) -> str:
        loc = self.mapping.hook_location(hook)
        if loc is None:
            model = self._hf_model.config.name_or_path
            raise TranscoderFormatError(
                unknown_hook_message(
                    hook,
                    f"{model}, a {self.mapping.architecture} on the nnsight backend",
                    list(self.mapping.hooks),
                ),
                key=key,
            )
        return loc

    @classmethod
    def load(
        cls,
        model_name_or_dir: str,
        transcoders_loader,
        *,
        device: torch.device,
        dtype: torch.dtype,
    ) -> NNsightBackend:
        """Load ``model_name_or_dir`` with eager attention; ``transcoders_loader(d_model,
        n_layers)`` returns the transcoders once the model's shape is known."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        name = str(model_name_or_dir)
        kwargs = {}
        config = AutoConfig.from_pretrained(name)
        quant = getattr(config, "quantization_config", None)
        if quant is not None:  # GPT-OSS ships MXFP4 weights: dequantize them
            method = quant.get("quant_method") if isinstance(quant, dict) else quant.quant_method
            if str(method) == "mxfp4":
                from transformers import Mxfp4Config

                kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
        hf_model = AutoModelForCausalLM.from_pretrained(
            name, attn_implementation="eager", dtype=dtype, **kwargs
        ).to(device)
        hf_model.eval()
        for p in hf_model.parameters():
            p.requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(name)
        cfg = text_config(hf_model.config)
        transcoders = transcoders_loader(int(cfg.hidden_size), int(cfg.num_hidden_layers))
        return cls(hf_model, tokenizer, transcoders)

    # -- model facts ------------------------------------------------------------------------

    @property
    def hf_model(self):
        return self._hf_model

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def unembedding(self) -> torch.Tensor:
        """``(D, V)`` unembedding (the transpose of the Hugging Face ``lm_head`` weight)."""
        return self.hf_model.get_output_embeddings().weight.T

    @contextlib.contextmanager
    def zero_softcap(self) -> Iterator[None]:
        """Temporarily disable the final logit softcap (Gemma-2), as circuit-tracer does (on the
        top-level config and, for a multimodal model, its ``text_config``)."""
        configs = [self.hf_model.config]
        text = getattr(self.hf_model.config, "text_config", None)
        if text is not None:
            configs.append(text)
        saved = [getattr(c, "final_logit_softcapping", None) for c in configs]
        for c in configs:
            c.final_logit_softcapping = None
        try:
            yield
        finally:
            for c, value in zip(configs, saved, strict=True):
                c.final_logit_softcapping = value

    # -- the one traced forward -------------------------------------------------------------

    def _install_sources(self) -> None:
        """Instrument, once and before any trace, every module whose forward we enter.

        nnsight swaps in a module's instrumented forward when ``.source`` is first used; if that
        happens inside a trace while the module is already running (Gemma-3: ``q_norm`` is
        reached inside ``self_attn``, whose ``.source`` comes next), the running call is the
        plain forward and its operations are never served. Installing up front avoids that.
        Functions reached by a recursive ``.source`` are instrumented when they are called."""
        for location in self._order:
            if ".source." in location:
                self._resolve(location.split(".source.", 1)[0] + ".source")
        # nnsight 0.8.1 quirk: in the first trace that drills into the attention function, a
        # site inside a submodule of the attention module read before it (Gemma-3's
        # q_norm/k_norm) makes the drill miss the call (OutOfOrderError). Drilling once
        # alone, in a warm-up trace over two tokens, caches the instrumented function.
        device = self.hf_model.get_output_embeddings().weight.device
        with torch.no_grad():
            self._run(
                torch.zeros(1, 2, dtype=torch.long, device=device),
                {name: _ignore for name in self.attention_hooks},
            )

    def _resolve(self, location: str):
        """``(envoy, attribute)`` of a location string, e.g. ``(…torch_rsqrt_0, "output")``.
        Recursive ``.source`` only resolves inside a trace, so call this inside one."""
        *path, attr = location.split(".")
        node = self.model
        for part in path:
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        return node, attr

    def _trace(
        self, tokens: torch.Tensor, handlers: dict[str, Handler], *, stop_at_final: bool = False
    ) -> torch.Tensor | None:
        """One forward of ``tokens (B, T)``: visit the handled locations in execution order,
        writing back what each handler returns. Returns the logits ``(B, T, V)``, or ``None``
        when the forward stops after the final-norm output."""
        order = [loc for loc in self._order if loc in handlers]
        result: list[torch.Tensor] = []
        with self.model.trace(tokens, use_cache=False) as tracer:
            for location in order:
                envoy, attr = self._resolve(location)
                if attr == "skip":  # the module does not run; its output is the handler's
                    envoy.skip(handlers[location](None))
                    continue
                value = getattr(envoy, attr)
                new = handlers[location](value)
                if new is not None and new is not value:
                    setattr(envoy, attr, new)
            if stop_at_final:
                tracer.stop()
            result.append(self.model.output.logits)
        return result[0] if result else None

    def _output_handler(self, fn: Handler) -> Handler:
        """Adapt a handler of ``(B, T, D)`` MLP outputs to a site that flattens ``B·T``."""
        if not self._flat_output:
            return fn

        def flat(value: torch.Tensor) -> torch.Tensor | None:
            new = fn(value.reshape(self._batch_shape + (value.shape[-1],)))
            return None if new is None else new.reshape(value.shape)

        return flat

    def _run(self, tokens, handlers, *, stop_at_final=False):
        self._batch_shape = tuple(tokens.shape)
        return self._trace(tokens, handlers, stop_at_final=stop_at_final)

    # -- forward passes ---------------------------------------------------------------------

    def _clean_forward(self, tokens: torch.Tensor) -> tuple[CleanRun, dict[str, torch.Tensor]]:
        """A clean run plus the values that freezing pins (location -> tensor)."""
        L = self.n_layers
        inputs: list[torch.Tensor | None] = [None] * L
        outputs: list[torch.Tensor | None] = [None] * L
        stored: dict[str, torch.Tensor] = {}

        def record(name: str) -> Handler:
            def fn(value):
                stored[name] = value.detach()

            return fn

        mlps: list[torch.Tensor | None] = [None] * L
        handlers: dict[str, Handler] = {name: record(name) for name in self.freeze_hooks}
        handlers[self.mapping.embed] = record("embed")
        for layer in range(L):
            handlers[self.input_hooks[layer]] = _store(inputs, layer)
            handlers[self.output_hooks[layer]] = self._output_handler(_store(outputs, layer))
            if self.mlp_outputs is not None:
                handlers[self.mlp_outputs[layer]] = _both(
                    handlers.get(self.mlp_outputs[layer]), _store(mlps, layer)
                )
        with torch.no_grad():
            logits = self._run(tokens[None], handlers)
        clean = CleanRun(
            logits=logits[0],
            feature_inputs=torch.stack(inputs)[:, 0],
            feature_outputs=torch.stack(outputs)[:, 0],
            embeddings=stored.pop("embed")[0],
            mlp_outputs=None if self.mlp_outputs is None else torch.stack(mlps)[:, 0],
        )
        return clean, stored

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

        def embed_leaf(value):
            leaves["embed"] = value.detach().requires_grad_(True)
            return leaves["embed"]

        def replace_output(layer: int) -> Handler:
            def fn(value):
                skip = self.transcoders.compute_skip(layer, inputs[layer])
                if skip is None:
                    y = value.detach().requires_grad_(True)
                else:
                    skip = skip.to(value.dtype)
                    y = skip + (value - skip).detach()
                outputs[layer] = y
                return y

            return fn

        def final(value):
            leaves["final"] = value

        handlers: dict[str, Handler] = {name: _detach for name in self.freeze_hooks}
        handlers[self.mapping.embed] = embed_leaf
        for layer in range(L):
            handlers[self.input_hooks[layer]] = _store(inputs, layer)
            handlers[self.output_hooks[layer]] = self._output_handler(replace_output(layer))
        handlers[self.mapping.final_residual] = final
        if mlp_outputs is not None and self.mlp_skips is not None:
            for layer, location in enumerate(self.mlp_skips):
                handlers[location] = _constant(broadcast_mlp_output(mlp_outputs, layer, tokens))
        with torch.enable_grad():
            self._run(tokens, handlers, stop_at_final=True)
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
        handlers: dict[str, Handler] = {}
        if pins is not None:
            for name, clean in pins.values().items():
                handlers[name] = _pinner(clean)
        handlers[self.mapping.embed] = edits.embed
        for layer in range(self.n_layers):
            handlers[self.input_hooks[layer]] = _bind_layer(edits.feature_input, layer)
            handlers[self.output_hooks[layer]] = self._output_handler(
                _bind_layer(edits.feature_output, layer)
            )
        handlers[self.mapping.final_residual] = edits.final_residual
        with torch.no_grad():
            return self._run(tokens, handlers)


def _ignore(value: torch.Tensor) -> None:
    return None


def _detach(value: torch.Tensor) -> torch.Tensor:
    return value.detach()


def _pinner(clean: torch.Tensor) -> Handler:
    def fn(value):
        return pin_prefix(value, clean.to(value.dtype))

    return fn


def _bind_layer(fn, layer: int) -> Handler:
    def handler(value):
        return fn(layer, value)

    return handler


def _store(buffer: list, index: int) -> Handler:
    def fn(value):
        buffer[index] = value

    return fn


def _both(first: Handler | None, then: Handler) -> Handler:
    """Two handlers at one location; ``then`` sees what ``first`` returned (if anything)."""
    if first is None:
        return then

    def fn(value):
        new = first(value)
        value = value if new is None else new
        then(value)
        return new

    return fn


def _constant(value: torch.Tensor) -> Handler:
    def fn(_):
        return value

    return fn


def _skip_location(output_location: str) -> str:
    """``mlp.output`` -> ``mlp.skip``: the gate where nnsight skips the module."""
    return output_location.rsplit(".", 1)[0] + ".skip"
