"""Run circuit-tracer 0.5.0's ``attribute`` on the benchmark model (run INSIDE its own venv).

    $CT_REF_VENV/bin/python benchmarks/run_circuit_tracer.py --data benchmarks/.data \
        --length 64 --batch-size 64 [--max-feature-nodes N] --out-json r.json [--out-tensors g.st]

The model is loaded into circuit-tracer's TransformerLens backend offline: TransformerLens 3.2.1
reads the local ``config.json`` (``get_pretrained_model_config`` accepts a directory), converts
the Hugging Face Llama weights with its own weight conversion, and the model is built as
circuit-tracer's ``TransformerLensReplacementModel`` exactly as its
``from_pretrained_and_transcoders`` does (``fold_ln``, ``center_writing_weights`` and
``center_unembed`` off), then configured with a ``TranscoderSet`` loaded by circuit-tracer's own
``load_transcoder_set`` (``lazy_encoder=False``, ``lazy_decoder=True``, its defaults).

Writes a JSON record (status, total and per-phase wall time parsed from circuit-tracer's own
phase log, peak RSS, active features, nodes) and, with ``--out-tensors``, the graph tensors as
safetensors. A ``MemoryError`` or an allocator failure is recorded as ``"OOM"``; a process killed
by the kernel is detected by the caller (``bench_attribution.py``).

This file imports circuit_tracer only; it does not import ct_engine.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from runner_common import (
    finished_record,
    peak_rss_mib,
    run_and_record,
    runner_parser,
    save_graph,
)  # noqa: E402

# circuit-tracer logs one "... completed in X.XXs" line per phase when verbose.
_PHASES = {
    "Precomputation": "precompute",
    "Forward pass": "forward",
    "Input vectors built": "targets",
    "Logit attributions": "logit_rows",
    "Feature attributions": "feature_rows",
    "Attribution": "total_logged",
}
_LINE = re.compile(r"^(.*?) (?:completed )?in ([0-9.]+)s$")


class _PhaseLog(logging.Filter):
    """Collects circuit-tracer's phase timings from its ``attribution`` logger (and drops them).

    A filter, not a handler: ``attribute(verbose=True)`` only installs its own handler (and
    sets the level to INFO) when the logger has no handlers.
    """

    def __init__(self):
        super().__init__()
        self.timings: dict[str, float] = {}
        self.seen_at: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        m = _LINE.match(record.getMessage())
        if m and m.group(1) in _PHASES:
            self.timings[_PHASES[m.group(1)]] = float(m.group(2))
            self.seen_at[_PHASES[m.group(1)]] = time.perf_counter()
        return False


def load_model(data: Path, dtype: torch.dtype = torch.float32):
    from circuit_tracer.replacement_model.replacement_model_transformerlens import (
        TransformerLensReplacementModel,
    )
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
    from transformer_lens import loading_from_pretrained as loading
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model_dir, tc_dir = data / "model", data / "transcoders"
    import yaml

    tc_cfg = yaml.safe_load((tc_dir / "config.yaml").read_text())
    n_layers = len(list(tc_dir.glob("layer_*.safetensors")))
    transcoders = load_transcoder_set(
        {i: str(tc_dir / f"layer_{i}.safetensors") for i in range(n_layers)},
        scan="ct-lakehouse-benchmark",
        feature_input_hook=tc_cfg["feature_input_hook"],
        feature_output_hook=tc_cfg["feature_output_hook"],
        device=torch.device("cpu"),
        dtype=dtype,
        lazy_encoder=False,
        lazy_decoder=True,
    )
    hf_model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=dtype)
    # transformers 5 wrote tokenizer_class "TokenizersBackend", unknown to 4.57: build the fast
    # tokenizer from tokenizer.json and the special tokens of tokenizer_config.json.
    # name_or_path and add_bos_token keep TransformerLens from re-loading it by name (prompts
    # are token ids, so BOS handling does not matter).
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(model_dir / "tokenizer.json"),
        name_or_path=str(model_dir),
        add_bos_token=True,
        **{k: tok_cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")},
    )
    # What HookedTransformer.from_pretrained does, minus the official-name lookup.
    cfg = loading.get_pretrained_model_config(
        str(model_dir), hf_cfg=hf_model.config.to_dict(), fold_ln=False, device="cpu", dtype=dtype
    )
    state_dict = loading.get_pretrained_state_dict(str(model_dir), cfg, hf_model, dtype=dtype)
    del hf_model
    model = TransformerLensReplacementModel(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=True,
        refactor_factored_attn_matrices=False,
    )
    model.move_model_modules_to_device()
    model._configure_replacement_model(transcoders)
    return model


def run(args) -> dict:
    from circuit_tracer import attribute

    torch.manual_seed(0)
    data = Path(args.data)
    tokens = json.loads((data / "prompt.json").read_text())["token_ids"][: args.length]
    record: dict = {
        "tool": "circuit-tracer",
        "version": _version(),
        "backend": "transformerlens",
        "length": len(tokens),
        "batch_size": args.batch_size,
        "max_feature_nodes": args.max_feature_nodes,
        "torch_threads": torch.get_num_threads(),
    }
    t0 = time.perf_counter()
    model = load_model(data)
    record["load_s"] = time.perf_counter() - t0
    record["rss_after_load_mib"] = peak_rss_mib()

    log = _PhaseLog()
    logger = logging.getLogger("attribution")
    logger.addFilter(log)
    t0 = time.perf_counter()
    try:
        graph = attribute(
            tokens,
            model,
            batch_size=args.batch_size,
            max_feature_nodes=args.max_feature_nodes,
            verbose=True,  # enables the phase log; the progress bar goes to stderr
        )
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "memory" not in str(err).lower():
            raise
        record.update(
            status="OOM",
            error=f"{type(err).__name__}: {str(err)[:300]}",
            wall_s_until_oom=time.perf_counter() - t0,
            timings=log.timings,
            peak_rss_mib=peak_rss_mib(),
        )
        return record
    wall = time.perf_counter() - t0
    timings = dict(log.timings)
    timings.pop("total_logged", None)
    if "feature_rows" in log.seen_at:  # packaging: from the feature-rows line to the end
        timings["package"] = t0 + wall - log.seen_at["feature_rows"]
    record.update(finished_record(graph, wall, timings))
    if args.out_tensors:
        save_graph(graph, args.out_tensors)
    return record


def _version() -> str:
    from importlib.metadata import version

    return version("circuit-tracer")


def main(argv: list[str] | None = None) -> int:
    ap = runner_parser(__doc__.split("\n")[0])
    return run_and_record(run, ap.parse_args(argv), "circuit-tracer")


if __name__ == "__main__":
    sys.exit(main())
