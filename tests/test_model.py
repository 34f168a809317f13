"""Model layer: shapes, padding invariance, every Table II ablation building and training."""

from __future__ import annotations

import copy

import pytest
import torch

from model.config import ModelConfig
from model.loss import UncertaintyWeightedLoss, tasks_for
from model.senbert import SenBERT, TemporalConv, masked_mean, sinusoidal_positions
from pipeline.training.config import ABLATIONS

D_A, D_V = 5, 7


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(audio_dim=D_A, vision_dim=D_V, d_model=16, num_heads=2, low_level_layers=2, self_attn_layers=2,
                high_level_layers=2, ffn_mult=2)
    base.update(kw)
    return ModelConfig(**base)


def build(minilm, **kw) -> SenBERT:
    enc, _tok, hidden = minilm
    cfg = tiny_cfg(**kw)
    encoder = copy.deepcopy(enc)
    if cfg.encoder_mode == "random":
        from transformers import AutoModel

        encoder = AutoModel.from_config(enc.config)
    return SenBERT(cfg, encoder if cfg.uses_language else None, hidden)


def make_inputs(tok, texts, a_lens, v_lens, seed=0, pad_extra=0):
    g = torch.Generator().manual_seed(seed)
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, am = enc["input_ids"], enc["attention_mask"]
    if pad_extra:
        ids = torch.cat([ids, torch.zeros(len(texts), pad_extra, dtype=ids.dtype)], 1)
        am = torch.cat([am, torch.zeros(len(texts), pad_extra, dtype=am.dtype)], 1)
    ta, tv = max(a_lens) + pad_extra, max(v_lens) + pad_extra
    audio = torch.zeros(len(texts), ta, D_A)
    vision = torch.zeros(len(texts), tv, D_V)
    am_a = torch.zeros(len(texts), ta, dtype=torch.bool)
    am_v = torch.zeros(len(texts), tv, dtype=torch.bool)
    for i, (la, lv) in enumerate(zip(a_lens, v_lens)):
        audio[i, :la] = torch.randn(la, D_A, generator=g)
        vision[i, :lv] = torch.randn(lv, D_V, generator=g)
        am_a[i, :la] = True
        am_v[i, :lv] = True
    return dict(input_ids=ids, attention_mask=am, audio=audio, audio_mask=am_a, vision=vision, vision_mask=am_v)


def test_output_shapes(minilm):
    model = build(minilm).eval()
    x = make_inputs(minilm[1], ["good movie", "bad", "it was fine i guess"], [4, 9, 6], [3, 5, 11])
    out = model(**x)
    assert set(out) == {"multimodal", "language", "sense"}
    for v in out.values():
        assert v.shape == (3,)
        assert torch.isfinite(v).all()


def test_an_untrained_auxiliary_head_gives_no_output(minilm):
    """W/O L_lan / W/O L_sen: that unimodal head is never trained, so its scores and MAE are not reported."""
    from pipeline.models.inference import metrics_of

    x = make_inputs(minilm[1], ["good movie", "bad"], [4, 9], [3, 5])
    for flag, gone, kept in (("use_language_task", "language", "sense"), ("use_sense_task", "sense", "language")):
        with torch.no_grad():
            out = build(minilm, **{flag: False}).eval()(**x)
        assert set(out) == {"multimodal", kept}, flag
        pred = {"labels": [1.0, -2.0], **{k: v.tolist() for k, v in out.items()}}
        m = metrics_of(pred)
        assert f"{gone}_mae" not in m and f"{kept}_mae" in m


def test_sense_block_shapes(minilm):
    model = build(minilm).eval()
    x = make_inputs(minilm[1], ["a", "b"], [4, 9], [3, 5])
    s = model.sense(x["vision"], x["vision_mask"], x["audio"], x["audio_mask"])
    # Z_S = [VCLS, V_1..V_5, ACLS, A_1..A_9]
    assert s["z_s"].shape == (2, 1 + 5 + 1 + 9, 16)
    assert int(s["acls_index"]) == 6
    assert s["scls"].shape == (2, 32)
    assert s["mask_s"][0].tolist() == [True] * 4 + [False] * 2 + [True] * 5 + [False] * 5


def test_padding_does_not_change_outputs(minilm):
    """Each clip alone, in a batch with longer clips, and with extra padding: same outputs."""
    model = build(minilm).eval()
    tok = minilm[1]
    texts, a_lens, v_lens = ["good movie", "it was a very very long and boring film", "ok"], [4, 12, 2], [3, 8, 6]
    batch = make_inputs(tok, texts, a_lens, v_lens, seed=1)
    padded = make_inputs(tok, texts, a_lens, v_lens, seed=1, pad_extra=7)
    with torch.no_grad():
        out_b = model(**batch)
        out_p = model(**padded)
        for i in range(3):
            single = {k: v[i : i + 1] for k, v in batch.items()}
            n_tok = int(single["attention_mask"].sum())
            single["input_ids"] = single["input_ids"][:, :n_tok]
            single["attention_mask"] = single["attention_mask"][:, :n_tok]
            single["audio"] = single["audio"][:, : a_lens[i]]
            single["audio_mask"] = single["audio_mask"][:, : a_lens[i]]
            single["vision"], single["vision_mask"] = (single["vision"][:, : v_lens[i]],
                                                       single["vision_mask"][:, : v_lens[i]])
            out_s = model(**single)
            for head in out_b:
                assert torch.allclose(out_s[head], out_b[head][i : i + 1], atol=1e-5), head
    for head in out_b:
        assert torch.allclose(out_b[head], out_p[head], atol=1e-5), head


def test_padding_invariance_with_strided_conv(minilm):
    model = build(minilm, conv_stride=2, conv_kernel_audio=3, conv_kernel_vision=5).eval()
    tok = minilm[1]
    a = make_inputs(tok, ["nice", "terrible acting"], [7, 10], [9, 4], seed=3)
    b = make_inputs(tok, ["nice", "terrible acting"], [7, 10], [9, 4], seed=3, pad_extra=6)
    with torch.no_grad():
        oa, ob = model(**a), model(**b)
    for head in oa:
        assert torch.allclose(oa[head], ob[head], atol=1e-5)


def test_masked_mean_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    m = torch.tensor([[True, True, False]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)


def test_positional_encoding_is_sinusoidal():
    pe = sinusoidal_positions(4, 6, torch.device("cpu"), torch.float32)
    assert pe[0, 0] == 0 and pe[0, 1] == 1  # sin(0), cos(0)
    assert pe[2, 2].item() == pytest.approx(torch.sin(torch.tensor(2 / 10000 ** (2 / 6))).item(), abs=1e-6)


def test_temporal_conv_lengths():
    conv = TemporalConv(3, 4, kernel=3, stride=2)
    x = torch.randn(2, 9, 3)
    mask = torch.tensor([[True] * 9, [True] * 4 + [False] * 5])
    y, m = conv(x, mask)
    assert y.shape == (2, 5, 4)
    assert m.sum(1).tolist() == [5, 2]


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_each_ablation_builds_and_takes_a_step(minilm, ablation):
    model = build(minilm, **ABLATIONS[ablation])
    cfg = model.cfg
    loss_fn = UncertaintyWeightedLoss(tasks_for(cfg))
    x = make_inputs(minilm[1], ["great fun", "dull", "fine"], [4, 6, 3], [5, 2, 4])
    labels = torch.tensor([2.0, -1.5, 0.0])
    params = list(model.parameters()) + list(loss_fn.parameters())
    trainable = [p for p in params if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    enc_before = ([p.detach().clone() for p in model.language.encoder.parameters()] if cfg.uses_language else [])
    opt = torch.optim.Adam(trainable, lr=1e-3)
    model.train()
    out = model(**x)
    loss, parts = loss_fn(out, labels)
    assert torch.isfinite(loss)
    assert set(parts) == set(tasks_for(cfg))
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(b, p) for b, p in zip(before, trainable))
    assert changed > 0
    if cfg.encoder_mode == "frozen":
        assert all(torch.equal(b, p) for b, p in zip(enc_before, model.language.encoder.parameters()))
        assert not model.language.encoder.training  # no dropout in a fixed encoder
    if cfg.uses_language and cfg.encoder_mode != "frozen":
        assert any(not torch.equal(b, p) for b, p in zip(enc_before, model.language.encoder.parameters()))


def test_ablation_tasks():
    assert tasks_for(tiny_cfg()) == ["multimodal", "language", "sense"]
    assert tasks_for(tiny_cfg(use_language_task=False)) == ["multimodal", "sense"]
    assert tasks_for(tiny_cfg(use_sense_task=False)) == ["multimodal", "language"]
    assert tasks_for(tiny_cfg(variant="language_only")) == ["language"]
    assert tasks_for(tiny_cfg(variant="sense_only")) == ["sense"]


def test_random_encoder_differs_from_pretrained(minilm):
    pre = build(minilm)
    rnd = build(minilm, encoder_mode="random")
    w_pre = pre.language.encoder.embeddings.word_embeddings.weight
    w_rnd = rnd.language.encoder.embeddings.word_embeddings.weight
    assert w_pre.shape == w_rnd.shape and not torch.allclose(w_pre, w_rnd)


def test_language_only_and_sense_only_have_no_other_blocks(minilm):
    lo = build(minilm, variant="language_only")
    so = build(minilm, variant="sense_only")
    assert not hasattr(lo, "sense") and not hasattr(lo, "multimodal")
    assert not hasattr(so, "language") and not hasattr(so, "multimodal")
    x = make_inputs(minilm[1], ["good"], [3], [3])
    with torch.no_grad():
        assert torch.equal(lo.eval()(**x)["multimodal"], lo(**x)["language"])
        assert torch.equal(so.eval()(**x)["multimodal"], so(**x)["sense"])


def test_invalid_configs():
    with pytest.raises(ValueError):
        ModelConfig(variant="nope")
    with pytest.raises(ValueError):
        ModelConfig(d_model=10, num_heads=3)
    with pytest.raises(ValueError):
        SenBERT(tiny_cfg(variant="sense_only", audio_dim=0))


# ----------------------------------------------------------------------------- even kernels, empty modalities
def _alone(batch: dict, i: int, a_len: int, v_len: int) -> dict:
    """Clip ``i`` of ``batch`` as a batch of one, cut to its own lengths (no padding at all)."""
    single = {k: v[i : i + 1] for k, v in batch.items()}
    n_tok = int(single["attention_mask"].sum())
    for key in ("input_ids", "attention_mask"):
        single[key] = single[key][:, :n_tok]
    for key, n in (("audio", a_len), ("vision", v_len)):  # an empty modality keeps one padded step
        single[key], single[key + "_mask"] = single[key][:, : max(n, 1)], single[key + "_mask"][:, : max(n, 1)]
    return single


@pytest.mark.parametrize("kw", [
    dict(conv_kernel_text=2),
    dict(conv_kernel_text=4, conv_kernel_audio=2, conv_kernel_vision=4),
    dict(conv_kernel_text=2, conv_kernel_audio=4, conv_kernel_vision=2, conv_stride=2),
])
def test_even_kernels_forward_and_padding_invariance(minilm, kw):
    """An even Conv1D kernel (text or sense) runs, and a clip alone = the same clip batched with longer ones."""
    model = build(minilm, **kw).eval()
    texts, a_lens, v_lens = ["good movie", "it was a very very long and boring film", "ok"], [4, 12, 2], [3, 8, 6]
    batch = make_inputs(minilm[1], texts, a_lens, v_lens, seed=4)
    padded = make_inputs(minilm[1], texts, a_lens, v_lens, seed=4, pad_extra=5)
    with torch.no_grad():
        out_b, out_p = model(**batch), model(**padded)
        for i in range(len(texts)):
            out_s = model(**_alone(batch, i, a_lens[i], v_lens[i]))
            for head in out_b:
                assert torch.isfinite(out_s[head]).all(), head
                assert torch.allclose(out_s[head], out_b[head][i : i + 1], atol=1e-5), (head, i)
    for head in out_b:
        assert torch.allclose(out_b[head], out_p[head], atol=1e-5), head


def test_even_text_kernel_mask_follows_the_conv(minilm):
    """The text mask handed to the multimodal block is the Conv1D's: one more step for an even kernel."""
    model = build(minilm, conv_kernel_text=2).eval()
    x = make_inputs(minilm[1], ["good movie", "it was a long film"], [3, 3], [3, 3])
    with torch.no_grad():
        lang = model.language(x["input_ids"], x["attention_mask"])
    assert lang["z_l"].shape[1] == lang["mask_l"].shape[1] == x["attention_mask"].shape[1] + 1
    assert lang["mask_l"].sum(1).tolist() == (x["attention_mask"].sum(1) + 1).tolist()


@pytest.mark.parametrize("kernel,stride", [(2, 1), (4, 1), (2, 2), (3, 1), (5, 4)])
def test_temporal_conv_empty_input_has_no_real_step(kernel, stride):
    conv = TemporalConv(3, 4, kernel=kernel, stride=stride)
    x = torch.randn(2, 9, 3)
    mask = torch.tensor([[False] * 9, [True] * 5 + [False] * 4])
    _y, m = conv(x, mask)
    assert m[0].sum().item() == 0
    assert m[1].sum().item() == conv.out_lengths(torch.tensor(5)).item() > 0


@pytest.mark.parametrize("kernel", [2, 4])
def test_empty_modality_with_even_sense_kernel(minilm, kernel):
    """No audio at all (mask all False, length 0): only [ACLS] is real, outputs finite and batch-invariant."""
    model = build(minilm, conv_kernel_audio=kernel, conv_kernel_vision=kernel).eval()
    texts, a_lens, v_lens = ["no sound here", "a longer clip with sound"], [0, 9], [4, 7]
    batch = make_inputs(minilm[1], texts, a_lens, v_lens, seed=5)
    with torch.no_grad():
        s = model.sense(batch["vision"], batch["vision_mask"], batch["audio"], batch["audio_mask"])
        a_mask = s["mask_s"][0, s["acls_index"]:]
        assert a_mask[0].item() and a_mask[1:].sum().item() == 0  # [ACLS] and no real audio step
        out_b = model(**batch)
        out_s = model(**_alone(batch, 0, 0, v_lens[0]))  # one all-padding audio step, mask False
    for head in out_b:
        assert torch.isfinite(out_b[head]).all() and torch.isfinite(out_s[head]).all(), head
        assert torch.allclose(out_s[head], out_b[head][:1], atol=1e-5), head


# ----------------------------------------------------------------------------- bf16 autocast
def test_masked_mean_counts_in_fp32_under_bf16_autocast():
    """375 real steps: bf16 rounds the count to 376; the mean must still be exact."""
    mask = torch.zeros(2, 400, dtype=torch.bool)
    mask[:, :375] = True
    x = torch.full((2, 400, 3), 7.0, dtype=torch.bfloat16)  # padding holds garbage, it must not count
    x[:, :375] = 1.25
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = masked_mean(x, mask)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, torch.full((2, 3), 1.25, dtype=torch.bfloat16))
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 400, 8, generator=g).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = masked_mean(y, mask)
    ref = y[:, :375].double().mean(1).to(torch.bfloat16)  # the exact mean, rounded once
    assert torch.equal(out, ref)


# ----------------------------------------------------------------------------- a whole modality missing
@pytest.mark.parametrize("missing", ["vision", "audio"])
def test_a_clip_without_a_modality_alone_equals_it_batched_as_all_padding(minilm, missing):
    """An extracted clip whose vision (or audio) was masked, (0, d): alone (collated as one padded
    step, mask all False) it scores exactly as in a batch with a clip of 10 steps of it."""
    import numpy as np

    from pipeline.corpora.clips import Clip
    from pipeline.models.dataset import ClipDataset, collate
    from pipeline.models.inference import batch_to_inputs

    model = build(minilm).eval()
    tok = minilm[1]
    rng = np.random.default_rng(11)
    dims = {"audio": D_A, "vision": D_V}
    present = "audio" if missing == "vision" else "vision"
    empty = Clip("masked", "nothing to see here", audio=None, vision=None)
    setattr(empty, missing, np.zeros((0, dims[missing]), np.float32))
    setattr(empty, present, rng.normal(size=(6, dims[present])).astype(np.float32))
    full = Clip("full", "a clip with every modality, and longer text",
                audio=rng.normal(size=(10, D_A)).astype(np.float32),
                vision=rng.normal(size=(10, D_V)).astype(np.float32))
    ds = ClipDataset([empty, full], tok, max_text_len=32)
    alone = collate([ds.items[0]], tok.pad_token_id)
    both = collate(ds.items, tok.pad_token_id)
    assert not alone[f"{missing}_mask"].any() and alone[missing].shape[1] == 1
    assert both[missing].shape[1] == 10 and not both[f"{missing}_mask"][0].any()
    with torch.no_grad():
        out_alone = model(**batch_to_inputs(alone, torch.device("cpu")))
        out_both = model(**batch_to_inputs(both, torch.device("cpu")))
    for head in out_both:
        assert torch.isfinite(out_alone[head]).all() and torch.isfinite(out_both[head]).all(), head
        assert torch.allclose(out_alone[head], out_both[head][:1], atol=1e-5), head
