"""Text-encoder resolution for a Hugging Face id: the local cache first, then the hub only when it
answers. Run in a subprocess because huggingface_hub reads its cache location at import time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
from pipeline.models.encoders import load_encoder, load_tokenizer
from common.errors import AssetError
out = {}
model, tok, hidden = load_encoder("someone/cached-minilm")
out["hidden"] = hidden
out["ids"] = tok("a good film")["input_ids"]
out["random_hidden"] = load_encoder("someone/cached-minilm", mode="random")[2]
for name in ("someone/not-cached", "another/absent"):
    try:
        load_tokenizer(name) if name.startswith("another") else load_encoder(name)
        out[name] = "loaded"
    except AssetError as e:
        out[name] = str(e)
print(json.dumps(out))
"""


def test_hub_id_from_the_local_cache_and_a_clear_error_when_the_hub_is_unreachable(tmp_path):
    from pipeline.models.encoders import resolve_encoder

    minilm_dir = Path(resolve_encoder("all-MiniLM-L6-v2").path)
    # A Hugging Face cache holding one model, laid out as huggingface_hub writes it.
    snap = tmp_path / "hub" / "models--someone--cached-minilm" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in minilm_dir.iterdir():
        if f.is_file() and (f.suffix in (".json", ".txt", ".safetensors")):
            shutil.copy(f, snap / f.name)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # online mode, no hub
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), HF_ENDPOINT="http://127.0.0.1:9",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["hidden"] == 384 and out["random_hidden"] == 384
    assert out["ids"][0] == 101 and out["ids"][-1] == 102 and len(out["ids"]) == 5  # [CLS] a good film [SEP]
    for name in ("someone/not-cached", "another/absent"):
        msg = out[name]
        assert name in msg and "cannot be reached" in msg and "huggingface-cli download" in msg, msg
