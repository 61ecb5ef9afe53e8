#!/usr/bin/env bash
# Create the circuit-tracer 0.5.0 reference venv used by benchmarks/bench_attribution.py.
#
#   benchmarks/setup_reference.sh            # -> $CT_REF_VENV or /work/ct-ref-venv
#   CT_REF_VENV=/some/dir benchmarks/setup_reference.sh
#
# circuit-tracer 0.5.0 needs an older stack than ct-lakehouse (transformers 4.57.3,
# transformer-lens 3.2.1, nnsight 0.7.0), hence its own venv. torch is installed from the CPU
# wheel index unless TORCH_INDEX_URL is set (e.g. to a CUDA index), so pip does not pull a
# multi-GB CUDA build; everything else comes from the default index. Where that index cannot
# be reached, pip's own configuration (e.g. a find-links folder with the CPU wheel) is used.
set -euo pipefail

VENV="${CT_REF_VENV:-/work/ct-ref-venv}"
PYTHON="${PYTHON:-python3}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import circuit_tracer" 2>/dev/null; then
    echo "circuit-tracer venv already present at $VENV"
else
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --upgrade pip
    # Offline machines carry the CPU wheel in pip's find-links instead: fall back to it.
    "$VENV/bin/python" -m pip install --retries 1 --timeout 20 --index-url "$TORCH_INDEX_URL" \
        torch==2.13.0 || "$VENV/bin/python" -m pip install torch==2.13.0
    "$VENV/bin/python" -m pip install torch==2.13.0 circuit-tracer==0.5.0 \
        transformers==4.57.3 transformer-lens==3.2.1 nnsight==0.7.0
fi

"$VENV/bin/python" - <<'PY'
from importlib.metadata import version

for name in ("circuit-tracer", "torch", "transformers", "transformer-lens", "nnsight"):
    print(f"{name}=={version(name)}")
PY
