import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REVEAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "reveal" / "reveal.jsonl.gz"


@pytest.fixture(scope="session", autouse=True)
def null_cache(tmp_path_factory):
    """Untrained nulls (analysis.null) are cached in a folder of this test session, not in the user's
    ~/.cache; set in the environment, so that ssmscope processes the tests start use it too."""
    folder = tmp_path_factory.mktemp("null-cache")
    previous = os.environ.get("SSMSCOPE_CACHE_DIR")
    os.environ["SSMSCOPE_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["SSMSCOPE_CACHE_DIR"]
    else:
        os.environ["SSMSCOPE_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def reveal_path() -> Path:
    if not REVEAL.is_file():
        pytest.skip(f"ReVeal not found at {REVEAL}")
    return REVEAL


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """400 synthetic functions (distances 8 and 16): a training run of a few seconds."""
    from ssmscope.data.synthetic import generate
    from ssmscope.files import write_jsonl

    path = tmp_path_factory.mktemp("data") / "synth.jsonl"
    write_jsonl(path, generate(400, [8, 16]))
    return path


@pytest.fixture
def kill_inside_epoch_2():
    """``kill(process, run_dir, pids)``: wait until run_dir/checkpoint.pt lies inside epoch 2 (step >= 3),
    SIGKILL every pid of ``pids()`` (default: the process), wait for the process; returns that state."""
    from ssmscope.errors import SsmscopeError
    from ssmscope.train.checkpoint import load_training_state

    def kill(process: subprocess.Popen, run_dir: Path, pids=None) -> dict:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            try:
                state = load_training_state(run_dir / "checkpoint.pt")
            except SsmscopeError:  # not written yet
                time.sleep(0.005)
                continue
            if state["epoch"] == 2 and state["step"] >= 3:
                for pid in pids() if pids else [process.pid]:
                    with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
                        os.kill(pid, signal.SIGKILL)
                process.wait()
                return state
        process.wait()
        pytest.fail("training finished before it could be killed inside epoch 2")

    return kill
