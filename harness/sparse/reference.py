"""Dense attention with a mask materialised: the definition every sparse path is checked against
(small inputs only: it builds the whole score matrix)."""

from __future__ import annotations

import torch
from torch import Tensor

from lcbench.sparse.patterns import Mask


def masked_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Mask, q_positions: Tensor | None = None, kv_positions: Tensor | None = None
) -> Tensor:
    """q (b, h, n_q, d), k, v (b, h_kv, n_kv, d) -> (b, h, n_q, d), in the inputs' dtype with the
    softmax in fp32. Positions default to 0..n-1."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    q_pos = torch.arange(q.shape[2]) if q_positions is None else q_positions
    kv_pos = torch.arange(k.shape[2]) if kv_positions is None else kv_positions
    zero = torch.zeros((), dtype=torch.long)
    allowed = mask(zero, zero, q_pos[:, None], kv_pos[None, :]).to(q.device)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")).float(), -1).to(q.dtype) @ v
