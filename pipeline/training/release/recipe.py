"""A part's recipe, and the defaults of the shipped default model's (standard library only: the
command line reads them without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the name of a part built with the default recipe
NAME = "senbert-text-mpnet-lora-ctx1"
#: the name of the shipped combination of parts
COMBINED_NAME = "senbert-text-mpnet-lora-ctx1-mix6"
DEFAULT_CONFIG = "language_lora"
#: the default recipe's overrides of its config (an override given after them wins)
DEFAULT_SET: tuple[str, ...] = ("context=1", "pretrain_context=0", "context_dropout=0.3", "epochs=15")
DEFAULT_SEEDS: tuple[int, ...] = (1, 2, 3)
#: how a recipe trains on MOSEI: a preliminary stage before MOSI, or MOSEI's train split added to MOSI's
MOSEI_USES = ("pretrain", "extra")
#: how a packed model stores its members: ``auto`` picks fp16 when the pack fits, else int8
#: (``pipeline.models.packed.WEIGHT_FORMATS`` and ``auto``)
WEIGHT_CHOICES = ("auto", "fp16", "int8")
#: the calibrations of a packed model's final score (``pipeline.models.calibration.KINDS``)
CALIBRATION_CHOICES = ("none", "quantile", "quantile_global")
#: how packed members read transcripts (``pipeline.corpora.clips.TEXT_STYLES``)
TEXT_STYLE_CHOICES = ("as_given", "plain")
#: the default working folders: a part's training runs, its packed model, a combination's copies
DEFAULT_WORK = "runs/default_model/stage"
DEFAULT_OUT = "runs/default_model/part_stage"
DEFAULT_COMBINE_WORK = "runs/default_model"
#: the rebuild command a combination's card gives
REBUILD = "bash scripts/rebuild_default_model.sh MOSI/label.csv MOSEI/label.csv"


@dataclass
class Recipe:
    """How the members of one part are trained: a run config (``config``: a name under
    configs/ or a YAML path) with its ``overrides`` (``key=value``, in order), one run per seed,
    the seeds packed as members (None: all of them) and how MOSEI is used (``mosei_as``:
    ``pretrain``, a preliminary stage; ``extra``, added to MOSI's train split)."""

    config: str = DEFAULT_CONFIG
    overrides: list[str] = field(default_factory=lambda: list(DEFAULT_SET))
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    members: list[int] | None = None
    mosei_as: str = "pretrain"

    def __post_init__(self) -> None:
        if self.mosei_as not in MOSEI_USES:
            raise ValueError(f"mosei_as must be one of {', '.join(MOSEI_USES)}, not {self.mosei_as!r}")

    @property
    def packed(self) -> list[int]:
        """The seeds packed as members."""
        return list(self.seeds if self.members is None else self.members)

    def record(self, text_style: str, weights: str) -> dict[str, Any]:
        """The manifest's ``recipe`` (with how the members read and the ``weights`` option given)."""
        return {"config": self.config, "set": list(self.overrides), "seeds": list(self.seeds),
                "members": self.packed, "text_style": text_style, "mosei_as": self.mosei_as, "weights": weights}

    @classmethod
    def of_manifest(cls, manifest: dict[str, Any]) -> Recipe:
        """The recipe a packed part's manifest records (the defaults for what an older one lacks)."""
        recipe = manifest.get("recipe") or {}
        return cls(config=recipe.get("config", DEFAULT_CONFIG), overrides=list(recipe.get("set", DEFAULT_SET)),
                   seeds=[int(s) for s in recipe.get("seeds", DEFAULT_SEEDS)],
                   members=[int(s) for s in recipe["members"]] if "members" in recipe else None,
                   mosei_as=recipe.get("mosei_as", "pretrain"))


def parse_seeds(text: str) -> list[int]:
    """``1,2,3`` -> [1, 2, 3]."""
    return [int(s) for s in text.split(",") if s.strip()]
