"""SenBERT: Sense-aware BERT (Fang, Liu, Zhang), one readable file.

Read next to section III of the paper. Names follow the paper:

* :class:`SenseBlock` -- eq. (1) Conv1D, eq. (2) positional encoding, eq. (3)-(4) the [VCLS]
  and [ACLS] tokens, eq. (6) the Low-level Cross-Attention Layer and the Self-Attention Layer
  over the concatenated sense sequence ``Z_S = [Z_V; Z_A]``.
* :class:`MAU` -- the Multi-Head Attention Unit of eq. (5) / Fig. 2(d).
* :class:`LanguageBlock` -- the pretrained BERT-family encoder, its [CLS] for the language
  task, and the Conv1D to the common width ``d``.
* :class:`MultimodalBlock` -- one more self-attention layer on text and sense, then the
  High-level Cross-Attention Layer with progressive reinforcement, eq. (7), and the final
  representation ``[CLS_HCA, VCLS_HCA, ACLS_HCA, CLS, SCLS]``.
* :class:`SenBERT` -- the three blocks, the three regression heads, and the ablations of
  Table II (see :class:`model.config.ModelConfig`); optionally an auxiliary :class:`OrdinalHead`
  (not in the paper; a training signal only).

Masks are boolean with ``True`` on real steps. Padded steps never receive attention (they are
masked as keys), never enter a mean, and are zeroed before every convolution, so adding padding
to a batch does not change any output.

This module is pure torch: the encoder is built elsewhere (``pipeline.models.encoders``) and passed in.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ModelConfig


# ----------------------------------------------------------------------------- utilities
def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of ``x`` (B, T, d) using only steps where ``mask`` (B, T) is True.

    Computed in fp32 at least (bf16 cannot count 375 steps: it rounds to 376) and returned in
    ``x``'s dtype; fp32 and fp64 inputs give exactly what they gave before.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    m = mask.unsqueeze(-1).to(dtype)
    return ((x.to(dtype) * m).sum(1) / m.sum(1).clamp(min=1.0)).to(x.dtype)


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """PE(T, d) of eq. (2): the sine/cosine encoding of the original Transformer, (T, d)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe.to(dtype)


class TemporalConv(nn.Module):
    """Conv1D over time, eq. (1): (B, T, d_in) -> (B, T', d_out), with the mask carried along.

    Padded input steps are zeroed first, so a real output step sees exactly what it would see
    in an unpadded batch (the convolution's own zero padding). The returned mask marks the output
    steps whose window overlaps a real input step: with an even kernel the output is one step
    longer than the input (stride 1), and an empty input (length 0) has no real output step.
    Callers must use the returned mask, never the input's.
    """

    def __init__(self, d_in: int, d_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride, self.pad = kernel, stride, kernel // 2
        self.conv = nn.Conv1d(d_in, d_out, kernel_size=kernel, stride=stride, padding=self.pad, bias=False)

    def out_lengths(self, lengths: Tensor) -> Tensor:
        """Real output steps for ``lengths`` real input steps (0 for an empty input, any kernel)."""
        n = torch.div(lengths + 2 * self.pad - self.kernel, self.stride, rounding_mode="floor") + 1
        # An even kernel's window fits in the zero padding alone (2 * pad == kernel): without this
        # an empty input would get one "real" step made only of padding.
        return torch.where(lengths > 0, n, torch.zeros_like(n))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = x * mask.unsqueeze(-1).to(x.dtype)
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        if self.stride == 1 and self.kernel % 2 == 1:
            new_mask = mask
        else:
            lengths = self.out_lengths(mask.sum(1)).clamp(min=0)
            steps = torch.arange(y.shape[1], device=y.device)
            new_mask = steps.unsqueeze(0) < lengths.unsqueeze(1)
        return y, new_mask


class MultiHeadAttention(nn.Module):
    """Multi-head attention of eq. (5): queries from X_alpha, keys and values from X_beta.

    Q_alpha = X_alpha W_Q, K_beta = X_beta W_K, V_beta = X_beta W_V, one softmax per head, the
    heads concatenated and projected by W_o. Computed with ``scaled_dot_product_attention``
    (a fused kernel: the (T_alpha x T_beta) weights are not kept in memory for backward).
    """

    def __init__(self, d: int, heads: int, attn_dropout: float) -> None:
        super().__init__()
        self.heads, self.d_k = heads, d // heads
        self.w_q = nn.Linear(d, d)
        self.w_k = nn.Linear(d, d)
        self.w_v = nn.Linear(d, d)
        self.w_o = nn.Linear(d, d)
        self.attn_dropout = attn_dropout

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def forward(self, x_alpha: Tensor, x_beta: Tensor, mask_beta: Tensor) -> Tensor:
        q, k, v = self._split(self.w_q(x_alpha)), self._split(self.w_k(x_beta)), self._split(self.w_v(x_beta))
        # padded beta steps are excluded from every softmax (mask True = may be attended to)
        attn_mask = mask_beta[:, None, None, :]
        drop = self.attn_dropout if self.training else 0.0
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        b, _, t, _ = heads.shape
        return self.w_o(heads.transpose(1, 2).reshape(b, t, self.heads * self.d_k))


class MAU(nn.Module):
    """Multi-Head Attention Unit, eq. (5) and Fig. 2(d).

    ``X_alpha`` is updated from ``X_beta``: multi-head (cross-)attention with queries from
    alpha and keys/values from beta, residual connection and layer normalisation, followed (as
    in the Transformer encoder layer the MAU is built on) by a position-wise feed-forward
    sub-layer with its own residual and layer norm. With alpha = beta it is self-attention.
    """

    def __init__(self, d: int, heads: int, ffn_mult: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d, heads, attn_dropout)
        self.norm1 = nn.LayerNorm(d)
        # Dropout on each sub-layer's output (as in the original Transformer), not on the wide
        # hidden layer of the feed-forward: that one doubled the cost of dropout on the CPU.
        self.ffn = nn.Sequential(nn.Linear(d, d * ffn_mult), nn.GELU(), nn.Linear(d * ffn_mult, d))
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x_alpha: Tensor, mask_alpha: Tensor, x_beta: Tensor, mask_beta: Tensor) -> Tensor:
        # (B, T_alpha, d) attends to (B, T_beta, d); padded beta steps are never attended to.
        h = self.norm1(x_alpha + self.drop(self.attn(x_alpha, x_beta, mask_beta)))
        h = self.norm2(h + self.drop(self.ffn(h)))
        return h * mask_alpha.unsqueeze(-1).to(h.dtype)  # keep padded steps at exactly zero


def _stack(n: int, cfg: ModelConfig) -> nn.ModuleList:
    return nn.ModuleList(
        MAU(cfg.d_model, cfg.num_heads, cfg.ffn_mult, cfg.dropout, cfg.attn_dropout) for _ in range(n)
    )


# ----------------------------------------------------------------------------- sense block
class SenseBlock(nn.Module):
    """Audio-visual interaction (section III-B): from raw V and A sequences to Z_S^SA."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.d = d
        self.conv_v = TemporalConv(cfg.vision_dim, d, cfg.conv_kernel_vision, cfg.conv_stride)  # eq. (1)
        self.conv_a = TemporalConv(cfg.audio_dim, d, cfg.conv_kernel_audio, cfg.conv_stride)  # eq. (1)
        self.low_level_v = _stack(cfg.low_level_layers, cfg)  # eq. (6), V reinforced by Z_A^[0]
        self.low_level_a = _stack(cfg.low_level_layers, cfg)  # eq. (6), A reinforced by Z_V^[0]
        self.self_attention = _stack(cfg.self_attn_layers, cfg)  # Fig. 2(c), alpha = beta = S
        self.drop = nn.Dropout(cfg.dropout)

    def _initial(self, conv: TemporalConv, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x_hat, mask = conv(x, mask)  # eq. (1)
        y = x_hat + sinusoidal_positions(x_hat.shape[1], self.d, x.device, x_hat.dtype)  # eq. (2)
        y = self.drop(y) * mask.unsqueeze(-1).to(y.dtype)
        cls = masked_mean(y, mask).unsqueeze(1)  # [VCLS] / [ACLS] by mean pooling
        z0 = torch.cat([cls, y], dim=1)  # eq. (3) / (4)
        mask0 = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return z0, mask0

    def forward(self, vision: Tensor, vision_mask: Tensor, audio: Tensor, audio_mask: Tensor) -> dict[str, Any]:
        z_v0, m_v = self._initial(self.conv_v, vision, vision_mask)  # (B, 1+T_v, d)
        z_a0, m_a = self._initial(self.conv_a, audio, audio_mask)  # (B, 1+T_a, d)
        # Low-level cross-attention, eq. (6): each modality keeps attending to the *initial*
        # sequence of the other one.
        z_v, z_a = z_v0, z_a0
        for layer in self.low_level_v:
            z_v = layer(z_v, m_v, z_a0, m_a)
        for layer in self.low_level_a:
            z_a = layer(z_a, m_a, z_v0, m_v)
        # Self-attention layer over Z_S^CA = [Z_V^CA; Z_A^CA].
        z_s = torch.cat([z_v, z_a], dim=1)
        m_s = torch.cat([m_v, m_a], dim=1)
        for layer in self.self_attention:
            z_s = layer(z_s, m_s, z_s, m_s)
        acls_index = z_v.shape[1]  # Z_S^SA splits back into [Z_V^SA; Z_A^SA]
        scls = torch.cat([z_s[:, 0], z_s[:, acls_index]], dim=-1)  # [VCLS_uni, ACLS_uni], (B, 2d)
        return {"z_s": z_s, "mask_s": m_s, "acls_index": acls_index, "scls": scls}


# ----------------------------------------------------------------------------- language block
class LanguageBlock(nn.Module):
    """Section III-C: the encoder's last layer Z_L, its [CLS], and Conv1D to width d."""

    def __init__(self, cfg: ModelConfig, encoder: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.frozen = cfg.encoder_mode == "frozen"
        if self.frozen:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        self.proj = TemporalConv(hidden_size, cfg.d_model, cfg.conv_kernel_text) if cfg.variant == "full" else None

    def train(self, mode: bool = True) -> "LanguageBlock":
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # a fixed encoder is a feature extractor: no dropout
        return self

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> dict[str, Tensor]:
        mask = attention_mask.bool()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            z_l = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = {"cls": z_l[:, 0], "mask_l": mask}
        if self.proj is not None:
            # the Conv1D's own mask: an even kernel gives one step more than the tokens
            out["z_l"], out["mask_l"] = self.proj(z_l, mask)
        return out


# ----------------------------------------------------------------------------- multimodal block
class MultimodalBlock(nn.Module):
    """Section III-C: pre-fusion self-attention, then the High-level Cross-Attention, eq. (7)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_l = _stack(cfg.pre_fusion_layers, cfg)
        self.pre_s = _stack(cfg.pre_fusion_layers, cfg)
        self.high_level_l = _stack(cfg.high_level_layers, cfg)
        self.high_level_s = _stack(cfg.high_level_layers, cfg)

    def forward(self, z_l: Tensor, m_l: Tensor, z_s: Tensor, m_s: Tensor, acls_index: int) -> Tensor:
        for layer in self.pre_l:
            z_l = layer(z_l, m_l, z_l, m_l)
        for layer in self.pre_s:
            z_s = layer(z_s, m_s, z_s, m_s)
        # Progressive reinforcement, eq. (7): both sides are updated from the other's
        # previous state at every step.
        for layer_l, layer_s in zip(self.high_level_l, self.high_level_s):
            z_l, z_s = layer_l(z_l, m_l, z_s, m_s), layer_s(z_s, m_s, z_l, m_l)
        # [CLS_HCA, VCLS_HCA, ACLS_HCA], (B, 3d)
        return torch.cat([z_l[:, 0], z_s[:, 0], z_s[:, acls_index]], dim=-1)


# ----------------------------------------------------------------------------- the model
#: The boundaries between the 7 sentiment classes (labels rounded to -3..3): -2.5, -1.5, ..., 2.5.
ORDINAL_THRESHOLDS = (-2.5, -1.5, -0.5, 0.5, 1.5, 2.5)


class OrdinalHead(nn.Module):
    """Cumulative-link head over the class boundaries: logit_k = w . h + b_k for each threshold.

    One shared direction ``w`` and one bias per boundary, so the six binary problems ("is the label
    above t_k?") share a single sentiment axis; the biases start ordered (from +2.5 down to -2.5) as
    a model scoring ``w . h`` on the label scale would need them."""

    def __init__(self, d_in: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(d_in, 1, bias=False)
        self.bias = nn.Parameter(-torch.tensor(ORDINAL_THRESHOLDS))

    def forward(self, h: Tensor) -> Tensor:
        return self.proj(self.drop(h)) + self.bias  # (B, 6)


class SenBERT(nn.Module):
    """Sense-aware BERT with multimodal, language and sense regression heads.

    ``forward`` returns a dict with ``multimodal`` (B,) always, plus ``language`` (B,) and
    ``sense`` (B,) when the variant has those blocks. For ``language_only`` the multimodal
    score is the language head's, for ``sense_only`` the sense head's (Table II). With
    ``cfg.ordinal_weight > 0`` and in training mode, it also returns ``ordinal`` (B, 6): the
    logits of the auxiliary ordinal head on the final score's representation.
    """

    def __init__(self, cfg: ModelConfig, encoder: nn.Module | None = None, encoder_hidden: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        if cfg.uses_language:
            if encoder is None or encoder_hidden <= 0:
                raise ValueError(f"variant {cfg.variant!r} needs a text encoder and its hidden size")
            self.language = LanguageBlock(cfg, encoder, encoder_hidden)
            self.language_head = nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(encoder_hidden, 1))
        if cfg.uses_sense:
            if cfg.audio_dim <= 0 or cfg.vision_dim <= 0:
                raise ValueError(f"variant {cfg.variant!r} needs audio_dim and vision_dim > 0")
            self.sense = SenseBlock(cfg)
            self.sense_head = nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(2 * d, 1))
        if cfg.variant == "full":
            self.multimodal = MultimodalBlock(cfg)
            final_dim = 3 * d + encoder_hidden + 2 * d  # [CLS_HCA, VCLS_HCA, ACLS_HCA, CLS, SCLS]
            self.multimodal_head = nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(final_dim, 1))
        if cfg.ordinal_weight > 0:
            final_in = {"full": 3 * d + encoder_hidden + 2 * d, "language_only": encoder_hidden, "sense_only": 2 * d}
            self.ordinal_head = OrdinalHead(final_in[cfg.variant], cfg.head_dropout)

    def encoder_parameters(self) -> list[nn.Parameter]:
        if not self.cfg.uses_language:
            return []
        return [p for p in self.language.encoder.parameters() if p.requires_grad]

    def other_parameters(self) -> list[nn.Parameter]:
        enc = {id(p) for p in self.encoder_parameters()}
        if self.cfg.uses_language:
            enc |= {id(p) for p in self.language.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc and p.requires_grad]

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        vision: Tensor | None = None,
        vision_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.cfg.uses_language:
            if input_ids is None or attention_mask is None:
                raise ValueError("this SenBERT variant needs input_ids and attention_mask")
            lang = self.language(input_ids, attention_mask)
            if "language" in self.cfg.trained_tasks:  # not under W/O L_lan: that head is never trained
                out["language"] = self.language_head(lang["cls"]).squeeze(-1)  # [CLS_uni]
        if self.cfg.uses_sense:
            if audio is None or vision is None or audio_mask is None or vision_mask is None:
                raise ValueError("this SenBERT variant needs audio, vision and their masks")
            sense = self.sense(vision, vision_mask, audio, audio_mask)
            if "sense" in self.cfg.trained_tasks:  # not under W/O L_sen: likewise
                out["sense"] = self.sense_head(sense["scls"]).squeeze(-1)  # [SCLS_uni]
        if self.cfg.variant == "full":
            hca = self.multimodal(lang["z_l"], lang["mask_l"], sense["z_s"], sense["mask_s"], sense["acls_index"])
            final = torch.cat([hca, lang["cls"], sense["scls"]], dim=-1)  # [CLS_final]
            out["multimodal"] = self.multimodal_head(final).squeeze(-1)
        elif self.cfg.variant == "language_only":
            final = lang["cls"]
            out["multimodal"] = out["language"]
        else:
            final = sense["scls"]
            out["multimodal"] = out["sense"]
        if self.training and self.cfg.ordinal_weight > 0:
            out["ordinal"] = self.ordinal_head(final)
        return out
