"""The training allocator setting reaches glibc (and is a no-op elsewhere)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from trials.allocator import keep_large_buffers_in_heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_settings_and_large_blocks_stop_being_mmapped():
    # In a child process: new mmap-backed blocks (mallinfo2's hblks) for one 64 MB allocation.
    probe = """
import ctypes, sys
from trials.allocator import keep_large_buffers_in_heap
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "tuned":
    assert keep_large_buffers_in_heap() is True
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
print(libc.mallinfo2().hblks - before)
"""
    counts = {mode: int(subprocess.run([sys.executable, "-c", probe, mode], check=True, capture_output=True,
                                       text=True).stdout.split()[-1]) for mode in ("default", "tuned")}
    assert counts == {"default": 1, "tuned": 0}


def test_returns_a_bool():
    assert isinstance(keep_large_buffers_in_heap(), bool)
