"""Feature extractors behind the 25D fingerprint, one job per module.

Each module has two halves: a per-block part that turns a block of samples (read with
context) into small additive or per-frame quantities, and a final part that turns the
concatenated quantities of the whole track into dimensions. Every frame lives on a
global grid of absolute sample positions (see :mod:`auralis.features.grid`), so the
result never depends on how the track was split into blocks.
"""
