"""Backends: each turns the kernel IR (``symdl.ir``) into source for one target.

``numba``: Python source for Numba (CPU). A new target (CUDA) is a new folder here with
its printer, function choices and loop mapping, and templates of its own.
"""
