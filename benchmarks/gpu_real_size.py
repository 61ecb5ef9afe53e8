"""Attribution at real model sizes on random weights (for one run on a GPU machine).

Builds, in a work directory, Hugging Face checkpoints with the real configs of Gemma-2-2B and
Llama-3.2-1B (random weights) plus random JumpReLU per-layer transcoders of real width
(16,384 features per layer; Llama's with a skip connection), loads them with
``ReplacementModel.from_pretrained(..., dtype=bf16 / fp32)`` and runs ``attribute`` on 32- and
128-token prompts (``max_feature_nodes=8192, batch_size=256``; one run with ``offload="cpu"``).
For each run it prints and records the phase timings, the peak CUDA memory, the node counts
and the memory estimate of :mod:`ct_engine.attribution.memory` next to the measured peak.
JumpReLU thresholds are set per layer, after loading, so that about ``--l0`` features per
token and layer are active on the prompt (random encoders give no natural sparsity).

Needs nothing but the repository and installed packages (no network): the tokenizer is the
word-level one of :mod:`ct_engine.tiny`, padded with extra tokens to the real vocabulary.

    python benchmarks/gpu_real_size.py --scale small          # CPU smoke test (tiny dims)
    python benchmarks/gpu_real_size.py --scale real --out $OUT/gpu_real_size.md
    python benchmarks/gpu_real_size.py --check-env            # print versions and exit

Results are written after every run (``--out``, default ``$OUT/gpu_real_size.md`` when
``$OUT`` is set, else ``benchmarks/results/gpu_real_size.md``; a ``.json`` beside it), so a
run stopped by a time limit keeps what it finished. Runs that would start after
``--time-budget`` seconds are skipped.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

START = time.perf_counter()

# Real sizes. head_dim, heads and KV heads as in the released configs.
REAL = {
    "gemma2": dict(
        n_layers=26, d_model=2304, d_mlp=9216, n_heads=8, n_kv_heads=4, head_dim=256,
        vocab=256000, d_transcoder=16384, skip=False,
    ),
    "llama": dict(
        n_layers=16, d_model=2048, d_mlp=8192, n_heads=32, n_kv_heads=8, head_dim=64,
        vocab=128256, d_transcoder=16384, skip=True,
    ),
}  # fmt: skip
SMALL = {
    "gemma2": dict(
        n_layers=3, d_model=64, d_mlp=256, n_heads=4, n_kv_heads=2, head_dim=32,
        vocab=600, d_transcoder=512, skip=False,
    ),
    "llama": dict(
        n_layers=2, d_model=64, d_mlp=256, n_heads=4, n_kv_heads=2, head_dim=16,
        vocab=500, d_transcoder=512, skip=True,
    ),
}  # fmt: skip
HOOKS = {
    "gemma2": ("ln2.hook_normalized", "hook_mlp_out"),
    "llama": ("hook_resid_mid", "mlp.hook_out"),
}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "transformer_lens", "safetensors", "tokenizers", "yaml"):
        try:
            mod = importlib.import_module(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception as err:  # noqa: BLE001 - report whatever is missing
            out[name] = f"MISSING ({type(err).__name__}: {err})"
    try:
        import torch

        out["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
            out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30)
    except Exception:  # noqa: BLE001
        pass
    return out


# ------------------------------------------------------------------------------ building


def build_model(directory: Path, family: str, dims: dict, device: str) -> Path:
    """A random-weight HF checkpoint (bf16 on disk) with the tiny tokenizer padded to vocab."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma2Config, LlamaConfig

    from ct_engine.tiny import _WORDS, build_tokenizer

    if (directory / "config.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    n_words = len(dict.fromkeys(_WORDS)) + 4
    vocab = build_tokenizer(directory, extra_vocab=dims["vocab"] - n_words)
    assert vocab == dims["vocab"], (vocab, dims["vocab"])
    common = dict(
        vocab_size=vocab,
        hidden_size=dims["d_model"],
        intermediate_size=dims["d_mlp"],
        num_hidden_layers=dims["n_layers"],
        num_attention_heads=dims["n_heads"],
        num_key_value_heads=dims["n_kv_heads"],
        head_dim=dims["head_dim"],
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if family == "gemma2":
        config = Gemma2Config(
            **common,
            max_position_embeddings=8192,
            query_pre_attn_scalar=256,
            sliding_window=4096,
            final_logit_softcapping=30.0,
            attn_logit_softcapping=50.0,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True,
        )
    else:
        config = LlamaConfig(
            **common,
            max_position_embeddings=131072,
            rope_theta=500000.0,
            tie_word_embeddings=True,
            rms_norm_eps=1e-5,
        )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    del model
    _free()
    return directory


def build_transcoders(directory: Path, family: str, dims: dict, device: str) -> Path:
    """GemmaScope-like random PLTs in circuit-tracer's ``layer_{i}.safetensors`` format."""
    import torch
    import yaml
    from safetensors.torch import save_file

    if (directory / "config.yaml").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    F, D = dims["d_transcoder"], dims["d_model"]
    g = torch.Generator(device=device).manual_seed(1)
    for layer in range(dims["n_layers"]):

        def randn(*shape, scale):
            t = torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * scale
            return t.to(torch.bfloat16).cpu()

        tensors = {
            "W_enc": randn(F, D, scale=D**-0.5),
            "b_enc": randn(F, scale=0.0),
            "W_dec": randn(F, D, scale=F**-0.5),
            "b_dec": randn(D, scale=0.01),
            # Placeholder: thresholds are set after loading (calibrate_thresholds).
            "activation_function.threshold": torch.zeros(F, dtype=torch.bfloat16),
        }
        if dims["skip"]:
            tensors["W_skip"] = randn(D, D, scale=0.1 * D**-0.5)
        save_file(tensors, str(directory / f"layer_{layer}.safetensors"))
    hooks = HOOKS[family]
    config = {
        "model_kind": "transcoder_set",
        "feature_input_hook": hooks[0],
        "feature_output_hook": hooks[1],
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def calibrate_thresholds(model, tokens, l0: int) -> list[float]:
    """Set each layer's JumpReLU thresholds (one value per layer) so that ``l0`` features per
    token are active on ``tokens`` (positions after the first)."""
    import torch

    thetas = []
    with torch.no_grad():
        clean = model.impl.clean_run(tokens)
        for layer, tc in enumerate(model.transcoders.transcoders):
            z = tc.encode(clean.feature_inputs[layer], apply_activation_function=False)[1:]
            z = z.float().flatten()
            k = max(z.numel() - l0 * (len(tokens) - 1), 1)
            theta = max(float(torch.kthvalue(z.cpu(), k).values), 0.0)
            tc.activation_function.threshold.fill_(theta)
            thetas.append(theta)
    return thetas


def prompt_tokens(n_tokens: int, vocab: int):
    import torch

    g = torch.Generator().manual_seed(1234)
    body = torch.randint(4, vocab, (n_tokens - 1,), generator=g)
    return torch.cat([torch.tensor([1]), body])


# ------------------------------------------------------------------------------- running


def run_one(model, tokens, *, batch_size, max_feature_nodes, offload, device) -> dict:
    import torch

    from ct_engine.attribution import attribute
    from ct_engine.attribution.memory import (
        InsufficientMemoryError,
        available_memory,
        check_memory,
        estimate_memory,
        suggest_batch_size,
    )

    row: dict = {}
    est = estimate_memory(
        model, tokens, batch_size=batch_size, max_feature_nodes=max_feature_nodes, offload=offload
    )
    free = available_memory(model.device)
    row.update(
        est_peak_gib=est.peak_bytes / 2**30,
        est_additional_gib=est.additional_bytes / 2**30,
        est_frozen_gib=est.frozen_forward_bytes / 2**30,
        est_backward_gib=est.backward_bytes / 2**30,
        est_host_gib=est.host_peak_bytes / 2**30,
        est_n_active=est.n_active_features,
        free_before_gib=free / 2**30,
        suggested_batch=suggest_batch_size(est, free),
    )
    print(est.summary(), flush=True)
    try:
        os.environ.pop("CT_SKIP_MEMORY_CHECK", None)
        check_memory(est)
        row["check"] = "fits"
    except InsufficientMemoryError:
        row["check"] = "refused"
    os.environ["CT_SKIP_MEMORY_CHECK"] = "1"  # run anyway: the point is to measure
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = 0
    t0 = time.perf_counter()
    try:
        graph = attribute(
            tokens,
            model,
            batch_size=batch_size,
            max_feature_nodes=max_feature_nodes,
            offload=offload,
            verbose=False,
        )
    except torch.OutOfMemoryError as err:
        row["status"] = f"OOM: {str(err).splitlines()[0][:160]}"
        row["wall_s"] = time.perf_counter() - t0
        return row
    if cuda:
        torch.cuda.synchronize()
    row["wall_s"] = time.perf_counter() - t0
    row["status"] = "ok"
    row["timings"] = {k: round(v, 3) for k, v in graph.timings.items()}
    row["n_active"] = int(graph.active_features.shape[0])
    row["n_features_kept"] = int(len(graph.selected_features))
    row["n_nodes"] = int(graph.adjacency_matrix.shape[0])
    row["adjacency_finite"] = bool(torch.isfinite(graph.adjacency_matrix).all())
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        row["measured_peak_gib"] = peak / 2**30
        row["measured_additional_gib"] = (peak - base) / 2**30
        row["reserved_peak_gib"] = torch.cuda.max_memory_reserved() / 2**30
        row["ratio_est_over_measured"] = est.additional_bytes / max(peak - base, 1)
    del graph
    return row


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def plan(lengths: list[int], offload_len: int) -> list[tuple[str, str, int, str | None]]:
    """(family, dtype, tokens, offload), most important first; loads are grouped."""
    runs = []
    for fam in ("gemma2", "llama"):
        runs += [(fam, "bfloat16", n, None) for n in lengths]
        runs.append((fam, "bfloat16", offload_len, "cpu"))
    runs += [(fam, "float32", lengths[0], None) for fam in ("gemma2", "llama")]
    return runs


def write_summary(out: Path, meta: dict, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    lines = [
        "# Attribution at real model sizes (random weights)",
        "",
        f"Generated by `benchmarks/gpu_real_size.py --scale {meta['scale']}`; "
        f"versions: {json.dumps(meta['versions'])}.",
        f"Settings: batch_size {meta['batch_size']}, max_feature_nodes "
        f"{meta['max_feature_nodes']}, L0 target {meta['l0']}/token/layer. "
        "Memory in GiB; 'additional' = peak minus what was allocated before `attribute`.",
        "",
        "| family | dtype | T | offload | status | wall s | precompute | forward | logit rows"
        " | feature rows | package | N_act | nodes | est. add. | meas. add. | est/meas"
        " | meas. peak | reserved | check |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        t = r.get("timings", {})

        def f(key, fmt="{:.2f}", src=r):
            v = src.get(key)
            return "–" if v is None else fmt.format(v)

        lines.append(
            f"| {r['family']} | {r['dtype']} | {r['tokens']} | {r['offload'] or '–'} | "
            f"{r.get('status', '?')} | {f('wall_s', '{:.1f}')} | {f('precompute', src=t)} | "
            f"{f('forward', src=t)} | {f('logit_rows', src=t)} | {f('feature_rows', src=t)} | "
            f"{f('package', src=t)} | {r.get('n_active', r.get('est_n_active', '–'))} | "
            f"{r.get('n_nodes', '–')} | {f('est_additional_gib')} | "
            f"{f('measured_additional_gib')} | {f('ratio_est_over_measured')} | "
            f"{f('measured_peak_gib')} | {f('reserved_peak_gib')} | {r.get('check', '–')} |"
        )
    lines += ["", "Loads and builds (s): " + json.dumps(meta.get("setup_s", {}))]
    out.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=["small", "real"], default="small")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--lengths", default="32,128")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-feature-nodes", type=int, default=8192)
    p.add_argument("--l0", type=int, default=75)
    p.add_argument("--families", default="gemma2,llama")
    p.add_argument("--time-budget", type=float, default=420.0, help="seconds; then skip runs")
    p.add_argument("--check-env", action="store_true")
    args = p.parse_args(argv)

    info = versions()
    print("versions:", json.dumps(info), flush=True)
    missing = [k for k, v in info.items() if str(v).startswith("MISSING")]
    if args.check_env:
        return 3 if missing else 0
    if missing:
        print(f"missing packages: {missing}; see the docstring", file=sys.stderr)
        return 3
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(min(torch.get_num_threads(), 16 if device != "cpu" else 2))
    dims_by_family = REAL if args.scale == "real" else SMALL
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.scale == "small":  # small enough for CPU; a cap below N_act (greedy path)
        lengths = [min(n, 24) for n in lengths]
        args.max_feature_nodes = min(args.max_feature_nodes, 1500)
    out = args.out
    if out is None:
        base = (
            Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent / "results"
        )
        out = base / "gpu_real_size.md"
    families = args.families.split(",")
    meta = dict(
        scale=args.scale,
        device=device,
        versions=info,
        batch_size=args.batch_size,
        max_feature_nodes=args.max_feature_nodes,
        l0=args.l0,
        setup_s={},
    )
    rows: list[dict] = []
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ct-real-size-")
        work = Path(tmp.name)
    else:
        work = args.workdir
    from ct_engine.replacement import ReplacementModel

    loaded = (None, None, None)
    for family, dtype_name, n_tokens, offload in plan(lengths, lengths[-1]):
        if family not in families:
            continue
        row = dict(family=family, dtype=dtype_name, tokens=n_tokens, offload=offload)
        elapsed = time.perf_counter() - START
        if elapsed > args.time_budget:
            row["status"] = f"skipped (time budget: {elapsed:.0f}s elapsed)"
            rows.append(row)
            write_summary(out, meta, rows)
            continue
        dims = dims_by_family[family]
        try:
            if loaded[:2] != (family, dtype_name):
                loaded = (None, None, None)
                _free()
                t0 = time.perf_counter()
                mdir = build_model(work / f"{family}-model", family, dims, device)
                tdir = build_transcoders(work / f"{family}-tc", family, dims, device)
                meta["setup_s"].setdefault(f"build {family}", round(time.perf_counter() - t0, 1))
                t0 = time.perf_counter()
                dtype = getattr(torch, dtype_name)
                model = ReplacementModel.from_pretrained(mdir, tdir, device=device, dtype=dtype)
                calib = prompt_tokens(max(lengths), dims["vocab"]).to(model.device)
                thetas = calibrate_thresholds(model, calib, args.l0)
                meta["setup_s"][f"load {family} {dtype_name}"] = round(time.perf_counter() - t0, 1)
                print(f"{family} {dtype_name}: thresholds {thetas[0]:.3g}..{thetas[-1]:.3g}")
                loaded = (family, dtype_name, model)
            model = loaded[2]
            tokens = prompt_tokens(n_tokens, dims["vocab"]).to(model.device)
            print(f"== {family} {dtype_name} T={n_tokens} offload={offload}", flush=True)
            row.update(
                run_one(
                    model,
                    tokens,
                    batch_size=args.batch_size,
                    max_feature_nodes=args.max_feature_nodes,
                    offload=offload,
                    device=device,
                )
            )
        except Exception as err:  # noqa: BLE001 - record and go on to the next run
            traceback.print_exc()
            row["status"] = f"error: {type(err).__name__}: {str(err)[:200]}"
        print(json.dumps(row), flush=True)
        rows.append(row)
        write_summary(out, meta, rows)
    print(f"wrote {out} ({time.perf_counter() - START:.0f}s)")
    if tmp is not None:
        tmp.cleanup()
    return 0 if all(r.get("status") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
