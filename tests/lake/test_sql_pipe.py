"""``ct sql ... | head``: a reader that stops early ends the command quietly."""

import subprocess
import sys


def test_a_closed_pipe_is_no_traceback(tmp_path):
    shell = (
        f"{sys.executable} -m ct_cli sql --max-rows 0 'SELECT * FROM range(200000)' | head -n 3;"
        " echo status=${PIPESTATUS[0]}"
    )
    done = subprocess.run(
        ["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.stderr == ""
    assert done.stdout.splitlines()[:3] == [" range", "------", "     0"]
    assert done.stdout.splitlines()[-1] == "status=141"
