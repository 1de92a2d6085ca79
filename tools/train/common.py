"""Shared helpers for the td-mini pipeline."""
import ctypes
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.environ.get("TD_DATA", os.path.normpath(os.path.join(REPO, "..", "shared", "data")))
WORK = os.path.join(HERE, "work")
TOKENS = os.path.join(WORK, "tokens")
EXPORT_DIR = os.path.join(REPO, "media", "models", "td-mini")


def tune_malloc():
    """Keep freed memory inside the process (no mmap/munmap per large tensor).

    On this VM (Firecracker with free-page reporting) every fresh page fault is expensive, and
    glibc serves PyTorch's large tensors with mmap and returns them with munmap on free, so each
    op re-faults its output buffer: elementwise ops ran 10-20x slower. Equivalent to running with
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge> MALLOC_TOP_PAD_=1GiB."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1)
        libc.mallopt(M_TOP_PAD, 1 << 30)
    except OSError:
        pass


def threads():
    """torch threads for the eval/export scripts (TD_THREADS, default 1: the cores are shared)."""
    return int(os.environ.get("TD_THREADS", "1"))


def load_sources():
    with open(os.path.join(WORK, "corpus", "splits.json")) as f:
        return json.load(f)["sources"]


def load_tokens(split, source):
    return np.fromfile(os.path.join(TOKENS, split, source + ".bin"), dtype="<u2")
