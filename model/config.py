"""Typed configuration of the SenBERT model, including every ablation of the paper's Table II."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Ablations of Table II (plus "full"), as values of :attr:`ModelConfig.variant` and flags.
VARIANTS = ("full", "language_only", "sense_only")
ENCODER_MODES = ("finetune", "frozen", "random")
ADAPTERS = ("none", "lora")
#: LoRA's default target modules: attention projections and both feed-forward layers, named as in
#: MPNet (q, k, v, o) and BERT (query, key, value); "output.dense" also matches BERT's attention output.
LORA_TARGETS = ("q", "k", "v", "o", "query", "key", "value", "intermediate.dense", "output.dense")


@dataclass
class ModelConfig:
    """Hyper-parameters of SenBERT. Defaults follow section IV-C of the paper.

    ``variant``: ``full`` (all blocks), ``language_only`` (BERT [CLS] -> regression) or
    ``sense_only`` (sense block's [VCLS, ACLS] -> regression).
    ``use_language_task`` / ``use_sense_task``: drop the auxiliary losses (W/O L_lan, W/O L_sen).
    ``encoder_mode``: ``finetune`` (default), ``frozen`` (Fixed) or ``random`` (Random init).
    ``adapter``: ``none`` (full fine-tuning of the encoder) or ``lora``: the pretrained encoder stays
    fixed and low-rank adapters (rank ``lora_r``, scale ``lora_alpha / lora_r``) on ``lora_targets``
    are trained with everything that is not the encoder (parameter-efficient fine-tuning).
    ``ordinal_weight``: when > 0, an auxiliary ordinal head reads the same representation as the
    final score's head and learns the six boundaries of the 7 sentiment classes (is the label above
    -2.5, -1.5, ..., 2.5?), one shared direction and six thresholds; its binary cross-entropy, times
    this weight, is added to the objective. It is a training signal only: the score stays the
    regression head's, and inference never reads the ordinal head. 0 (default) = no such head.
    """

    encoder: str = "all-MiniLM-L6-v2"
    variant: str = "full"
    encoder_mode: str = "finetune"
    use_language_task: bool = True
    use_sense_task: bool = True

    audio_dim: int = 0  # d_A: columns of the acoustic sequence
    vision_dim: int = 0  # d_V: columns of the visual sequence
    d_model: int = 64  # the common width d of eq. (1)
    num_heads: int = 8  # heads in both cross-attention layers and the self-attention layer
    low_level_layers: int = 4  # blocks per direction of the low-level cross-attention (2x4)
    self_attn_layers: int = 4  # blocks of the sense self-attention layer
    high_level_layers: int = 4  # blocks per direction of the high-level cross-attention (2x4)
    pre_fusion_layers: int = 1  # the "one more" self-attention layer before the HCA (text, sense)
    ffn_mult: int = 4  # feed-forward width of a MAU, as a multiple of d_model
    conv_kernel_audio: int = 3  # k_A of eq. (1)
    conv_kernel_vision: int = 3  # k_V of eq. (1)
    conv_kernel_text: int = 1  # Conv1D kernel projecting the encoder output to width d
    conv_stride: int = 1  # temporal stride of the sense Conv1D (1 = the paper)
    dropout: float = 0.3
    attn_dropout: float = 0.0  # dropout on attention weights (off: keeps the fused attention kernel)
    head_dropout: float = 0.3
    adapter: str = "none"
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    ordinal_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.encoder_mode not in ENCODER_MODES:
            raise ValueError(f"encoder_mode must be one of {ENCODER_MODES}, got {self.encoder_mode!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.conv_stride < 1:
            raise ValueError("conv_stride must be >= 1")
        if not self.ordinal_weight >= 0:  # also refuses NaN
            raise ValueError(f"ordinal_weight must be >= 0, got {self.ordinal_weight}")
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {self.adapter!r}")
        if self.adapter != "none":
            if self.encoder_mode != "finetune":
                raise ValueError(f"adapter {self.adapter!r} trains the encoder through adapters; it needs "
                                 f"encoder_mode 'finetune', not {self.encoder_mode!r}")
            if not self.uses_language:
                raise ValueError(f"adapter {self.adapter!r} needs a text encoder; variant {self.variant!r} has none")
            if self.lora_r < 1 or not self.lora_targets:
                raise ValueError("lora_r must be >= 1 and lora_targets must name at least one module")

    @property
    def uses_language(self) -> bool:
        return self.variant in ("full", "language_only")

    @property
    def uses_sense(self) -> bool:
        return self.variant in ("full", "sense_only")

    @property
    def trained_tasks(self) -> tuple[str, ...]:
        """The heads whose losses this configuration optimises (Table II's auxiliary-task ablations);
        the model outputs only these (an untrained head's score would mean nothing)."""
        if self.variant == "language_only":
            return ("language",)
        if self.variant == "sense_only":
            return ("sense",)
        return ("multimodal",) + (("language",) if self.use_language_task else ()) + \
            (("sense",) if self.use_sense_task else ())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)
