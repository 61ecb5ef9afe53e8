"""``ReplacementModel``: a language model whose MLPs are explained by transcoders.

The forward pass is the real model's, unchanged. What the replacement adds is a linearization
used by attribution and interventions, plus the transcoders themselves. The heavy
lifting is done by a backend (:mod:`ct_engine.replacement.transformerlens`); this class holds
what is common: tokenization, the zeroed positions, the config and validation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch

from ct_engine.graph import ModelConfig
from ct_engine.options import BACKENDS, DTYPE_NAMES  # noqa: F401 (re-exported)
from ct_engine.presets import check_prompt_prefix, is_gemma3_it, resolve_model, zero_positions_for
from ct_engine.replacement.backend import Backend, text_config
from ct_engine.transcoders import TranscoderFormatError, Transcoders, load_transcoders


class ModelLoadError(ValueError):
    """A model name or directory that cannot be loaded."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ReplacementModel:
    """A Hugging Face causal LM plus transcoders, ready for attribution.

    Build one with :meth:`from_pretrained` or :meth:`from_pretrained_and_transcoders`.
    Attributes of note: ``transcoders``, ``tokenizer``, ``cfg``
    (:class:`~ct_engine.graph.ModelConfig`), ``backend`` (its name), ``zero_positions``
    (positions whose features and errors are zeroed: the leading special token), ``scan``.

    The TransformerLens-style surface of circuit-tracer's notebooks is the same on both
    backends: ``model(prompt)`` (``forward``: the logits), ``to_tokens``, ``to_str_tokens``,
    ``to_string``, ``generate``, ``W_U``, ``feature_input_hook``, ``feature_output_hook``.
    ``impl`` is the backend (:mod:`~ct_engine.replacement.transformerlens` or
    :mod:`~ct_engine.replacement.nnsight`) and ``impl.model`` the library's model it runs (a
    ``TransformerBridge`` or an ``nnsight.NNsight``). The names in :attr:`DELEGATED` are read
    from it: ``run_with_cache``, ``run_with_hooks``, ``hooks`` and ``hook_dict`` on
    TransformerLens, ``trace`` on nnsight; on the other backend each raises an
    ``AttributeError`` that names what to use instead.
    """

    def __init__(
        self,
        backend_impl: Backend,
        transcoders: Transcoders,
        *,
        model_name: str,
        zero_positions: slice = slice(0, 1),
    ):
        self.impl = backend_impl
        self.transcoders = transcoders
        self.model_name = model_name
        self.zero_positions = zero_positions
        self.tokenizer = backend_impl.tokenizer
        hf_cfg = text_config(backend_impl.hf_model.config)
        self.cfg = ModelConfig(
            n_layers=backend_impl.n_layers,
            d_model=backend_impl.d_model,
            d_head=int(
                getattr(hf_cfg, "head_dim", None)
                or hf_cfg.hidden_size // hf_cfg.num_attention_heads
            ),
            n_heads=int(hf_cfg.num_attention_heads),
            d_mlp=int(hf_cfg.intermediate_size),
            d_vocab=backend_impl.d_vocab,
            tokenizer_name=model_name,
            model_name=model_name,
            original_architecture=(hf_cfg.architectures or [type(backend_impl.hf_model).__name__])[
                0
            ],
            n_key_value_heads=getattr(hf_cfg, "num_key_value_heads", None),
            dtype=str(self.dtype).removeprefix("torch."),
        )

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model_name: str | Path,
        transcoder_set: str | Path | Transcoders,
        backend: str = "transformerlens",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        lazy_encoder: bool = False,
        lazy_decoder: bool = True,
        cache_dir: str | Path | None = None,
    ) -> ReplacementModel:
        """Load a model (a local Hugging Face directory or a hub id) and its transcoders.

        Args:
            model_name: local directory with ``config.json`` and weights, or a hub id.
            transcoder_set: a transcoder reference (local folder, ``owner/repo[/sub][@rev]``,
                ``hf://...``, ``gemma``, ``llama``) or already-loaded :class:`Transcoders`.
            backend: ``"transformerlens"`` or ``"nnsight"``.
            device: defaults to CUDA when available, else CPU.
            dtype: model and transcoder dtype.
            lazy_encoder, lazy_decoder: read transcoder weights from disk on demand.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        device = torch.device(device) if device is not None else default_device()
        try:
            name = resolve_model(str(model_name))
        except FileNotFoundError as err:
            raise ModelLoadError(str(err)) from err
        _check_model_reference(name)

        def load_tc(d_model: int, n_layers: int) -> Transcoders:
            if isinstance(transcoder_set, Transcoders):
                _check_transcoder_shape(transcoder_set, d_model, n_layers)
                return transcoder_set.to(device=device, dtype=dtype)
            return load_transcoders(
                transcoder_set,
                device=device,
                dtype=dtype,
                lazy_encoder=lazy_encoder,
                lazy_decoder=lazy_decoder,
                d_model=d_model,
                n_layers=n_layers,
                cache_dir=cache_dir,
            )

        if backend == "nnsight":
            from ct_engine.replacement.nnsight import NNsightBackend as backend_cls
        else:
            from ct_engine.replacement.transformerlens import TransformerLensBackend as backend_cls

        try:
            impl = backend_cls.load(name, load_tc, device=device, dtype=dtype)
        except (TranscoderFormatError, ModelLoadError):
            raise
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(
                f"could not load model {name!r}: {err}. Give a local Hugging Face model "
                "directory (config.json + weights + tokenizer) or a hub id while online."
            ) from err
        name = str(model_name)
        return cls(impl, impl.transcoders, model_name=name, zero_positions=zero_positions_for(name))

    @classmethod
    def from_pretrained_and_transcoders(
        cls,
        model_name: str | Path,
        transcoders: Transcoders,
        backend: str = "transformerlens",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> ReplacementModel:
        """Load a model and build the replacement model around already-loaded transcoders.

        Args:
            model_name: local Hugging Face model directory, or a hub id.
            transcoders: a :class:`~ct_engine.transcoders.Transcoders` (for example from
                :func:`~ct_engine.transcoders.load_transcoders`); moved to ``device`` and
                ``dtype``. Their ``d_model`` and layer count must be the model's.
            backend: ``"transformerlens"`` or ``"nnsight"``.
            device: defaults to CUDA when available, else CPU.
            dtype: model and transcoder dtype.

        Raises:
            TypeError: ``transcoders`` is not loaded (a reference goes to
                :meth:`from_pretrained`, which loads it).
            TranscoderFormatError: the transcoders do not fit the model.
        """
        if not isinstance(transcoders, Transcoders):
            raise TypeError(
                "from_pretrained_and_transcoders takes loaded Transcoders, got "
                f"{type(transcoders).__name__}: pass a transcoder reference to "
                "ReplacementModel.from_pretrained, or load it with load_transcoders first"
            )
        return cls.from_pretrained(
            model_name, transcoders, backend=backend, device=device, dtype=dtype
        )

    # -- facts ------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.impl.name

    @property
    def n_layers(self) -> int:
        return self.impl.n_layers

    @property
    def d_model(self) -> int:
        return self.impl.d_model

    @property
    def d_vocab(self) -> int:
        return self.impl.d_vocab

    @property
    def n_ctx(self) -> int:
        return self.impl.n_ctx

    @property
    def device(self) -> torch.device:
        return self.impl.unembedding.device

    @property
    def dtype(self) -> torch.dtype:
        return self.impl.unembedding.dtype

    @property
    def scan(self):
        return self.transcoders.scan

    @property
    def skip_transcoder(self) -> bool:
        return self.transcoders.skip_connection

    def zero_softcap(self) -> contextlib.AbstractContextManager:
        """Context manager: logits without Gemma-2's final softcap (a no-op elsewhere)."""
        if getattr(text_config(self.impl.hf_model.config), "final_logit_softcapping", None) is None:
            return contextlib.nullcontext()
        return self.impl.zero_softcap()

    # -- activations and interventions (ct_engine.interventions) -----------------------------

    def get_activations(self, inputs, sparse: bool = False, apply_activation_function=True):
        """Logits ``(1, T, V)`` and activations ``(L, T, F)``; see
        :func:`ct_engine.interventions.get_activations`."""
        from ct_engine.interventions import get_activations

        return get_activations(self, inputs, sparse, apply_activation_function)

    def feature_intervention(
        self,
        inputs,
        interventions,
        constrained_layers=None,
        freeze_attention: bool = True,
        apply_activation_function: bool = True,
        sparse: bool = False,
        return_activations: bool = True,
    ):
        """Logits ``(1, T, V)`` and activations with features set to given values; see
        :func:`ct_engine.interventions.feature_intervention`."""
        from ct_engine.interventions import feature_intervention

        return feature_intervention(
            self,
            inputs,
            interventions,
            constrained_layers,
            freeze_attention,
            apply_activation_function,
            sparse,
            return_activations,
        )

    def feature_intervention_generate(
        self,
        inputs,
        interventions,
        constrained_layers=None,
        freeze_attention: bool = True,
        apply_activation_function: bool = True,
        sparse: bool = False,
        return_activations: bool = True,
        **generate_kwargs,
    ):
        """Text, per-step logits ``(n_steps, V)`` and activations under interventions; see
        :func:`ct_engine.interventions.feature_intervention_generate`.

        ``generate_kwargs``: ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_k``,
        ``top_p``, ``freq_penalty``, ``stop_at_eos``, ``eos_token_id``, ``seed``, ``verbose``,
        and, accepted for circuit-tracer's signature although they change nothing here,
        ``use_past_kv_cache`` (no cache is used), ``prepend_bos`` and ``padding_side``.
        """
        from ct_engine.interventions import feature_intervention_generate

        return feature_intervention_generate(
            self,
            inputs,
            interventions,
            constrained_layers,
            freeze_attention,
            apply_activation_function,
            sparse,
            return_activations,
            **generate_kwargs,
        )

    # -- the model surface of circuit-tracer's notebooks --------------------------------------

    def forward(self, input, return_type: str = "logits") -> torch.Tensor:
        """Logits of a plain forward pass, as ``model(prompt)`` in circuit-tracer's notebooks
        (TransformerLens's ``forward``): ``(1, T, V)`` for one prompt (a string gets the
        leading special token, as in :meth:`ensure_tokenized`), ``(B, T, V)`` for a list of
        same-length prompts or a ``(B, T)`` tensor. No gradients are kept.

        Raises:
            ValueError: ``return_type`` other than ``"logits"`` (the loss is not computed here).
        """
        if return_type != "logits":
            raise ValueError(
                f"return_type={return_type!r} is not supported: the replacement model returns "
                "logits only (return_type='logits')"
            )
        from ct_engine.interventions.intervene import tokens_of
        from ct_engine.replacement.edits import ForwardEdits

        return self.impl.edited_run(tokens_of(self, input, allow_batch=True), ForwardEdits())

    def __call__(self, input, return_type: str = "logits") -> torch.Tensor:
        return self.forward(input, return_type)

    @property
    def feature_input_hook(self) -> str:
        """The transcoders' input hook (TransformerLens name, such as ``hook_resid_mid``)."""
        return self.transcoders.feature_input_hook

    @property
    def feature_output_hook(self) -> str:
        """The transcoders' output hook (TransformerLens name, such as ``hook_mlp_out``)."""
        return self.transcoders.feature_output_hook

    @property
    def W_U(self) -> torch.Tensor:
        """``(d_model, d_vocab)`` unembedding, as TransformerLens's ``W_U``."""
        return self.impl.unembedding

    def to_tokens(self, input: str, prepend_bos: bool = True) -> torch.Tensor:
        """``(1, T)`` token ids of one prompt, on the model's device.

        With ``prepend_bos`` the ids start with the special token attribution uses
        (:meth:`ensure_tokenized`); without, they are the text's own tokens."""
        if not isinstance(input, str):
            raise TypeError(f"to_tokens takes one prompt string, got {type(input).__name__}")
        if prepend_bos:
            return self.ensure_tokenized(input)[None]
        ids = self.tokenizer(input, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    def to_str_tokens(
        self, input: str | torch.Tensor | Sequence[int], prepend_bos: bool = True
    ) -> list[str]:
        """Each token of a prompt (a string, or ids ``(T,)`` / ``(1, T)``) as its own string."""
        ids = self.to_tokens(input, prepend_bos) if isinstance(input, str) else input
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        return [self.tokenizer.decode([i]) for i in ids]

    def to_string(self, tokens: torch.Tensor | Sequence[int]) -> str | list[str]:
        """Decode ids: ``(T,)`` to one string, ``(B, T)`` to a list of strings."""
        tokens = torch.as_tensor(tokens)
        if tokens.ndim == 2:
            return [self.tokenizer.decode(row.tolist()) for row in tokens]
        return self.tokenizer.decode(tokens.reshape(-1).tolist())

    def generate(self, input, max_new_tokens: int = 20, **generate_kwargs) -> str:
        """The prompt and a continuation, as text: :meth:`feature_intervention_generate`
        without interventions, so both backends generate alike (greedy unless
        ``do_sample=True``; see it for the other keyword arguments)."""
        text, _, _ = self.feature_intervention_generate(
            input,
            [],
            return_activations=False,
            max_new_tokens=max_new_tokens,
            **generate_kwargs,
        )
        return text

    # What is read from the backend's own model, ``impl.model`` (a TransformerLens
    # ``TransformerBridge`` or an ``nnsight.NNsight`` around the Hugging Face model), per backend,
    # and what to use on the other backend instead.
    DELEGATED = {
        "transformerlens": ("run_with_cache", "run_with_hooks", "hooks", "hook_dict"),
        "nnsight": ("trace",),
    }
    _INSTEAD = {
        "transformerlens": "get_activations / feature_intervention, or model.trace (an nnsight "
        "trace of model.impl.model)",
        "nnsight": "get_activations / feature_intervention, or model.hooks / run_with_hooks / "
        "run_with_cache (TransformerLens hooks)",
    }

    def __getattr__(self, name: str):
        # Only called for names the class does not define.
        impl = self.__dict__.get("impl")
        if impl is None or name.startswith("__"):
            raise AttributeError(name)
        if name in self.DELEGATED[impl.name]:
            return getattr(impl.model, name)
        for other, names in self.DELEGATED.items():
            if name in names:
                raise AttributeError(
                    f"{name} comes from the {other} backend's model, and this model runs on "
                    f"the {impl.name} backend: use {self._INSTEAD[other]}, or load with "
                    f"backend={other!r}"
                )
        raise AttributeError(
            f"ReplacementModel has no attribute {name!r}. Delegated to the {impl.name} "
            f"backend's model: {', '.join(self.DELEGATED[impl.name])}; that model itself is "
            f"model.impl.model ({type(impl.model).__name__})"
        )

    # -- tokens -----------------------------------------------------------------------------

    def ensure_tokenized(self, prompt: str | torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Turn a prompt into a 1-D token tensor that starts with a special token.

        Strings are tokenized without special tokens. When the first token is not special,
        the first defined id among BOS, PAD, EOS and the other special ids is prepended (an
        id of 0 counts: circuit-tracer skips it).

        Raises:
            ValueError: empty prompt, a non-1-D tensor, ids outside the vocabulary, or a
                prompt longer than the model's context.
        """
        if isinstance(prompt, str):
            if not prompt.strip():
                raise ValueError("the prompt is empty: give some text to attribute")
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            tokens = torch.tensor(ids, dtype=torch.long)
        else:
            tokens = torch.as_tensor(prompt, dtype=torch.long).squeeze()
            if tokens.ndim == 0:
                tokens = tokens[None]
            if tokens.ndim != 1:
                raise ValueError(
                    f"token input must be 1-D (one sequence), got shape {tuple(tokens.shape)}"
                )
        if tokens.numel() == 0:
            raise ValueError("the prompt is empty: it tokenized to no tokens")
        bad = (tokens < 0) | (tokens >= self.d_vocab)
        if bad.any():
            raise ValueError(
                f"token ids {tokens[bad].tolist()[:5]} are outside the vocabulary "
                f"[0, {self.d_vocab})"
            )
        specials = set(self.tokenizer.all_special_ids)
        if is_gemma3_it(self.model_name):
            # Instruction-tuned Gemma-3: the chat prefix is required, nothing is prepended.
            check_prompt_prefix(self.model_name, tokens)
        elif int(tokens[0]) not in specials:
            tok = self.tokenizer
            candidates = [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id]
            candidates += list(tok.all_special_ids)
            first = next((c for c in candidates if c is not None), None)
            if first is not None:
                tokens = torch.cat([torch.tensor([first]), tokens])
        if len(tokens) > self.n_ctx:
            raise ValueError(
                f"the prompt has {len(tokens)} tokens (with the leading special token) but "
                f"the model's context is {self.n_ctx}: shorten it"
            )
        return tokens.to(self.device)


def _check_model_reference(name: str) -> None:
    path = Path(name)
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(
                f"{name!r} is a directory without config.json: not a Hugging Face model folder"
            )
        return
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path:
        raise ModelLoadError(f"model directory {name!r} does not exist")


def _check_transcoder_shape(transcoders: Transcoders, d_model: int, n_layers: int) -> None:
    if transcoders.d_model != d_model:
        raise TranscoderFormatError(
            f"transcoders have d_model={transcoders.d_model} but the model has {d_model}",
            key="d_model",
        )
    if transcoders.n_layers != n_layers:
        raise TranscoderFormatError(
            f"transcoders cover {transcoders.n_layers} layers but the model has {n_layers}",
            key="n_layers",
        )
