"""glibc allocator settings for CPU training.

A CapsNet training step allocates and frees buffers of 10-200 MB (convolution scratch space,
routing votes). glibc serves blocks above its mmap threshold (at most 32 MB) with fresh
``mmap`` calls, so every step page-faults and zero-fills them again; on 2 cores that costs
10-25% of the step. Keeping such blocks in the heap and never trimming it removes that cost;
peak memory stays the same because the blocks are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int


def keep_large_buffers_in_heap() -> bool:
    """Serve every allocation from the heap and stop returning freed memory to the OS.

    The in-process equivalent of ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>``; it
    affects the whole process from now on and is idempotent.

    Returns
    -------
    bool
        ``True`` when glibc accepted the settings; ``False`` on other C libraries (macOS,
        musl, Windows), where nothing changes.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        logger.debug("no glibc mallopt in %r: allocator left as it is", name)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    accepted = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    if not accepted:
        logger.debug("mallopt refused the allocator settings")
    return accepted
