"""Keep a training process's batch-sized CPU buffers in the heap instead of fresh mmap pages.

PyTorch's CPU allocator is plain malloc. An update allocates and frees buffers of 1-60 MB (pixel
batches, activations, their gradients). glibc gives blocks above its mmap threshold a mapping of their
own, unmapped again on free (the threshold adapts upwards to what was freed, but never past 32 MB),
and it trims free memory at the top of the heap back to the kernel; each time, the next update faults
the same amount in afresh. At SPEC's shapes on a 2-core CPU that is up to 12,000 page faults per update
for av-td3 and 43,000 for SB3: with these thresholds av-td3's update runs 2-20% faster (it varies with
the heap's fragmentation) and SB3's 18-41% (``benchmarks/bench_update.py`` times SB3 both ways).
Fixed thresholds keep those blocks in the heap, reused from one update to the next once the heap holds
the working set (after a few updates); the process keeps its peak working set, as it would under a
caching allocator. Values never change.
"""

from __future__ import annotations

import ctypes
import sys

# Allocations above this still get their own mapping (the replay storage, checkpoint buffers) and go
# back to the kernel when freed. Batch-sized buffers are far below it.
MMAP_THRESHOLD = 256 << 20
# Free heap memory is given back only beyond this (glibc's own rule: twice the mmap threshold).
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def tune_allocator() -> bool:
    """Set the thresholds for this process (glibc on Linux); True if they were set. Elsewhere (macOS,
    musl) it does nothing: those allocators behave differently and are left alone."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    # Both: setting either one turns off glibc's adaptation of the other.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                              TRIM_THRESHOLD))
