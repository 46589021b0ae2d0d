"""Bit-level XNOR/popcount arithmetic of binarized layers (paper 003, eq. (2)).

With weights and activations in {-1, +1} encoded as bits (+1 -> 1, -1 -> 0), a dot product of
length ``n`` is ``2 * popcount(XNOR(x_bits, w_bits)) - n``. The simulator's binary layers
compute the +-1 matmul (same numbers, fast kernels); :func:`xnor_popcount_linear` is the
bit-level reference the tests compare it with, packing bits into int64 words.
"""

from __future__ import annotations

import torch

WORD = 63  # bits per packed word (keeps the sign bit clear)


def to_bits(v: torch.Tensor) -> torch.Tensor:
    """+-1 tensor -> bool bits (+1 -> True)."""
    return v > 0


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Bool (..., n) -> int64 (..., ceil(n / 63)) words, bit k of word w = element 63 w + k."""
    n = bits.shape[-1]
    n_words = -(-n // WORD)
    pad = n_words * WORD - n
    b = torch.nn.functional.pad(bits.to(torch.int64), (0, pad))
    b = b.reshape(*bits.shape[:-1], n_words, WORD)
    weights = torch.pow(2, torch.arange(WORD, dtype=torch.int64))
    return (b * weights).sum(-1)


def popcount(words: torch.Tensor) -> torch.Tensor:
    """Number of set bits of each int64 word (SWAR bit counting)."""
    x = words
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return (x * 0x0101010101010101 >> 56) & 0xFF


def xnor_popcount_linear(x_pm1: torch.Tensor, w_pm1: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` for +-1 ``x`` (N, n) and ``w`` (out, n) via XNOR and popcount (int64)."""
    n = x_pm1.shape[-1]
    xw = pack_bits(to_bits(x_pm1))  # (N, words)
    ww = pack_bits(to_bits(w_pm1))  # (out, words)
    mask = pack_bits(torch.ones(n, dtype=torch.bool))  # valid bits per word
    xnor = ~(xw[:, None, :] ^ ww[None, :, :]) & mask
    matches = popcount(xnor).sum(-1)
    return 2 * matches - n
