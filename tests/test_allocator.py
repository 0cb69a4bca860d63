"""av_td3.allocator: with its thresholds set, a batch-sized buffer comes from the heap, not from a mapping
of its own that is unmapped when freed (each case in a fresh interpreter: the setting is process-wide).
"""

import ctypes
import subprocess
import sys

import pytest

# Bytes in mmapped blocks (glibc's mallinfo2().hblkhd) while a 48 MB tensor is alive: the float pixels of
# a 512x4x84x84 batch are 58 MB, above the largest threshold glibc adapts to by itself (32 MB).
PROBE = """
import ctypes, sys, torch
from av_td3.allocator import tune_allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert tune_allocator()
before = libc.mallinfo2().hblkhd
x = torch.ones(12 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def mmapped_bytes(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def has_glibc_mallinfo2() -> bool:
    """Without setting anything in this (pytest's) process: is this glibc >= 2.33, whose mallopt
    thresholds and mallinfo2 the probe uses?"""
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not has_glibc_mallinfo2(), reason="needs glibc >= 2.33 on Linux (mallopt, mallinfo2)")
def test_batch_sized_buffers_come_from_the_heap():
    assert mmapped_bytes("default") >= 48 << 20  # glibc's default: a mapping of its own
    assert mmapped_bytes("tuned") == 0
