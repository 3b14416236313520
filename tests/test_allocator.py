"""keep_freed_memory: freed large blocks are reused instead of being faulted in again."""

import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from ssmscope.allocator import keep_freed_memory
applied = keep_freed_memory()
u = torch.randn(64, 128, 512)  # a training batch's activations, 16 MB
for _ in range(6):  # the spectrum of a zero-padded batch, as in S4D.forward: 64 MB of temporaries
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    spectrum = torch.fft.rfft(u, n=1024)
    del spectrum
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)  # faults of the last repeat
"""


def page_faults(env_value: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={"SSMSCOPE_KEEP_FREED_MEMORY": env_value, "PATH": ""}).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_repeated_large_temporaries_reuse_memory_instead_of_faulting_it_in():
    applied, faults_kept = page_faults("1")
    disabled, faults_default = page_faults("0")
    assert applied == "True" and disabled == "False"
    # glibc's default maps every large temporary anew (thousands of 4 KiB pages each time);
    # with the thresholds raised, the heap's freed blocks are reused once it has grown.
    assert faults_default > 10_000
    assert faults_kept < faults_default / 10
