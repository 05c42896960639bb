"""open_clip's transformer blocks rebuilt for inference throughput, on open_clip's own weights.

Two rewrites, applied to a built and loaded network (the checkpoint's key layout is never touched: the
weights are loaded first, then moved into the new modules):

- ``self_attention``: each ``nn.MultiheadAttention`` of open_clip's ``ResidualAttentionBlock`` becomes a
  ``SelfAttention``: one qkv ``nn.Linear``, ``F.scaled_dot_product_attention`` on (batch, heads, tokens,
  head_dim) and the out ``nn.Linear``. The arithmetic is MHA's (tested equal in fp32); gone are MHA's
  sequence-first transposes and copies, and the projections become ordinary linears that the fp8 rewrite
  and ``torch.compile`` can see.
- ``float8``: every ``nn.Linear`` inside the blocks becomes a ``Float8Linear`` (e4m3 operands, one scale per
  weight row and one per activation row, computed on the fly; bf16 out) run by ``torch._scaled_mm``: twice
  the bf16 tensor-core rate on H100/H200. The rest (patch embedding, norms, projections) stays as it was.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448
ROWS = 16  # _scaled_mm on CUDA takes row counts that are multiples of 16


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` self-attention without the attention weights, as MHA computes it; called
    with MHA's arguments by open_clip's block, so the block's code runs unchanged."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        width = mha.embed_dim
        self.heads, self.batch_first = mha.num_heads, mha.batch_first
        self.qkv = nn.Linear(width, 3 * width, bias=mha.in_proj_bias is not None)
        self.out = nn.Linear(width, width, bias=mha.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight.copy_(mha.in_proj_weight)
            self.out.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                self.qkv.bias.copy_(mha.in_proj_bias)
            if mha.out_proj.bias is not None:
                self.out.bias.copy_(mha.out_proj.bias)
        self.to(mha.in_proj_weight.device)

    def forward(self, query: Any, key: Any, value: Any, need_weights: bool = False,
                attn_mask: Any = None) -> tuple[Any, None]:
        if key is not query or value is not query or need_weights:
            raise ValueError("SelfAttention computes self-attention without weights only")
        x = query if self.batch_first else query.transpose(0, 1)
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if attn_mask is not None and attn_mask.dtype == torch.bool:  # MHA's True masks out; SDPA's keeps
            attn_mask = torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(attn_mask, float("-inf"))
        elif attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        y = self.out(y.transpose(1, 2).reshape(batch, tokens, width))
        return (y if self.batch_first else y.transpose(0, 1)), None


def convertible(mha: nn.MultiheadAttention) -> bool:
    """MHA as open_clip builds it: one packed in-projection, no extra key/value rows, no dropout."""
    return (mha._qkv_same_embed_dim and mha.bias_k is None and not mha.add_zero_attn and mha.dropout == 0.0
            and mha.in_proj_weight is not None)


def self_attention(network: nn.Module) -> int:
    """Replace the convertible ``nn.MultiheadAttention`` of every open_clip ``ResidualAttentionBlock`` (the
    self-attention blocks of both towers; attentional poolers attend across and keep theirs)."""
    from open_clip.transformer import ResidualAttentionBlock

    blocks = [m for m in network.modules() if isinstance(m, ResidualAttentionBlock)]
    converted = 0
    for block in blocks:
        if isinstance(block.attn, nn.MultiheadAttention) and convertible(block.attn):
            block.attn = SelfAttention(block.attn)
            converted += 1
    return converted


def quantise_rows(x: Any) -> tuple[Any, Any]:
    """(x / scale as e4m3, scale): one float32 scale per row, the row's largest magnitude mapped to 448."""
    scale = x.detach().abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class Float8Linear(nn.Module):
    """``y = x W^T + b`` with x and W in e4m3: W scaled per output row once, x per row at each call;
    ``torch._scaled_mm`` multiplies in fp8 and accumulates in fp32, out in bf16."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight, scale = quantise_rows(linear.weight.detach())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", weight)  # (out, in) row-major: .t() is the column-major operand
        self.register_buffer("weight_scale", scale.reshape(1, -1).contiguous())  # (1, out)
        bias = linear.bias.detach().to(torch.bfloat16) if linear.bias is not None else None
        self.register_buffer("bias", bias)
        # open_clip's blocks report their weight dtype from mlp.c_fc (the text tower casts its embeddings to
        # it); this attribute is what open_clip reads for a quantised layer (its bitsandbytes int8 hook).
        self.int8_original_dtype = linear.weight.dtype

    def forward(self, x: Any) -> Any:
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        pad = -rows.shape[0] % ROWS
        if pad:
            rows = F.pad(rows, (0, 0, 0, pad))
        q, scale = quantise_rows(rows)
        y = torch._scaled_mm(q, self.weight.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=torch.bfloat16)
        if pad:
            y = y[: y.shape[0] - pad]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3"


def float8(network: nn.Module) -> int:
    """Replace every ``nn.Linear`` inside the transformer blocks (attention and MLP) by a ``Float8Linear``;
    returns how many. Run ``self_attention`` first, or MHA's packed projections stay in bf16."""
    from open_clip.transformer import ResidualAttentionBlock

    converted = 0
    for block in [m for m in network.modules() if isinstance(m, ResidualAttentionBlock)]:
        for parent in [block, *block.modules()]:
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:  # MHA's out_proj (a Linear subclass) is not called as a module
                    setattr(parent, name, Float8Linear(child))
                    converted += 1
    return converted


def float8_supported(device: Any) -> bool:
    """e4m3 matmuls with per-row scales: CUDA devices of compute capability 9.0 (Hopper) or newer, and the
    CPU (slow; for tests). Ada (8.9) has e4m3 tensor cores but not every torch build scales them by row."""
    if device.type == "cpu":
        return True
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (9, 0)


def bucket(rows: int) -> int:
    """The padded batch size: the next power of two from 16, so a compiled forward meets few shapes."""
    return max(ROWS, 1 << (rows - 1).bit_length())


def padded(x: Any, rows: int) -> Any:
    """``x`` with zero rows appended up to ``rows``."""
    if x.shape[0] == rows:
        return x
    return torch.cat([x, x.new_zeros((rows - x.shape[0], *x.shape[1:]))])
