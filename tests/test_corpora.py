"""Corpus sources: MMSA pickles (exact layout, round trip) and label.csv files."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from common.errors import InputError
from pipeline.corpora.label_csv import read_label_csv
from pipeline.corpora.load import load_corpus
from pipeline.corpora.mmsa import read_mmsa_pkl, write_mmsa_pkl
from tests.conftest import make_corpus


def write_mmsa_like(path, n_per_split=(4, 2, 2), t_a=6, d_a=5, t_v=8, d_v=7, seed=0, pad_at="end"):
    """A file in exactly MMSA's unaligned_50.pkl layout, written by hand.

    ``pad_at="start"``: the all-zero padding rows come first and the real frames last, as in
    some widely used MOSI/MOSEI "noalign" pickles.
    """
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in zip(("train", "valid", "test"), n_per_split):
        audio = rng.normal(size=(n, t_a, d_a)).astype(np.float32)
        audio[0, 0, 0] = -np.inf  # MMSA's audio features contain -inf
        vision = rng.normal(size=(n, t_v, d_v)).astype(np.float32)
        a_len = rng.integers(1, t_a + 1, size=n)
        v_len = rng.integers(1, t_v + 1, size=n)
        for i in range(n):
            audio[i, a_len[i]:] = 0
            vision[i, v_len[i]:] = 0
            if pad_at == "start":  # the padding rows wrap round to the front
                audio[i] = np.roll(audio[i], t_a - a_len[i], axis=0)
                vision[i] = np.roll(vision[i], t_v - v_len[i], axis=0)
        data[split] = {
            "raw_text": np.array([f"{split} clip {i} was good" for i in range(n)]),
            "audio": audio,
            "vision": vision,
            "audio_lengths": [int(x) for x in a_len],
            "vision_lengths": [int(x) for x in v_len],
            "text_bert": np.zeros((n, 3, 50), np.float32),
            "text": np.zeros((n, 50, 768), np.float32),
            "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
            "classification_labels": np.zeros(n, np.float32),
            "id": np.array([f"vid{split}$_${i}" for i in range(n)]),
        }
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return data


def test_read_mmsa_layout(tmp_path):
    data = write_mmsa_like(tmp_path / "unaligned_50.pkl")
    c = read_mmsa_pkl(tmp_path / "unaligned_50.pkl")
    assert c.split_sizes() == {"train": 4, "valid": 2, "test": 2}
    assert len(c.audio_names) == 5 and len(c.vision_names) == 7
    first = c.split("train")[0]
    assert first.audio.shape == (data["train"]["audio_lengths"][0], 5)
    assert first.vision.shape == (data["train"]["vision_lengths"][0], 7)
    assert np.isfinite(first.audio).all() and first.audio[0, 0] == 0.0  # -inf became 0
    assert first.text == "train clip 0 was good"
    assert first.label == pytest.approx(float(data["train"]["regression_labels"][0]))


def test_aligned_file_without_lengths(tmp_path):
    data = write_mmsa_like(tmp_path / "aligned_50.pkl")
    for split in data:
        del data[split]["audio_lengths"], data[split]["vision_lengths"]
    with open(tmp_path / "aligned_50.pkl", "wb") as f:
        pickle.dump(data, f)
    c = read_mmsa_pkl(tmp_path / "aligned_50.pkl")
    assert all(cl.audio.shape[0] == 6 and cl.vision.shape[0] == 8 for cl in c.clips)



def _real_frames(data, split, i, name, pad_at):
    """The real frames of clip ``i`` as the generator laid them out (-inf cleaned to 0)."""
    seq, n = data[split][name][i], data[split][f"{name}_lengths"][i]
    real = seq[len(seq) - n:] if pad_at == "start" else seq[:n]
    return np.where(np.isfinite(real), real, 0).astype(np.float32)


@pytest.mark.parametrize("pad_at", ["end", "start"])
def test_read_mmsa_padding_at_either_end(tmp_path, caplog, pad_at):
    """Real frames are taken from the end that does not hold the all-zero padding rows; one log line says which."""
    caplog.set_level(logging.INFO, logger="pipeline.corpora")
    data = write_mmsa_like(tmp_path / "noalign.pkl", n_per_split=(6, 3, 3), pad_at=pad_at, seed=2)
    assert any(n < 6 for part in data.values() for n in part["audio_lengths"])  # some clips are padded
    c = read_mmsa_pkl(tmp_path / "noalign.pkl")
    for split in ("train", "valid", "test"):
        for i, clip in enumerate(c.split(split)):
            for name in ("audio", "vision"):
                np.testing.assert_array_equal(getattr(clip, name), _real_frames(data, split, i, name, pad_at))
    lines = [r.getMessage() for r in caplog.records if "noalign.pkl" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"audio padded at the {pad_at}" in lines[0] and f"vision padded at the {pad_at}" in lines[0]


def test_read_mmsa_undecidable_clip_follows_the_file(tmp_path):
    """A clip whose last real frames are zero could be padded at either end: it follows the file's side."""
    data = write_mmsa_like(tmp_path / "noalign.pkl", n_per_split=(6, 3, 3), pad_at="start", seed=2)
    part = data["train"]
    t_a = part["audio"].shape[1]
    i = next(j for j, n in enumerate(part["audio_lengths"]) if t_a < 2 * n < 2 * t_a)  # padded, more frames than pad
    n = part["audio_lengths"][i]
    part["audio"][i, n:] = 0  # the last real frames are silent: rows n.. are zero, like the padding rows ..t_a-n
    assert not part["audio"][i, : t_a - n].any() and not part["audio"][i, n:].any()  # both ends look like padding
    assert part["audio"][i, t_a - n : n].all()
    with open(tmp_path / "noalign.pkl", "wb") as f:
        pickle.dump(data, f)
    clip = read_mmsa_pkl(tmp_path / "noalign.pkl").split("train")[i]
    expected = part["audio"][i, t_a - n :]
    np.testing.assert_array_equal(clip.audio, np.where(np.isfinite(expected), expected, 0))


def test_pkl_round_trip(tmp_path, minilm):
    write_mmsa_like(tmp_path / "in.pkl")
    c1 = read_mmsa_pkl(tmp_path / "in.pkl")
    write_mmsa_pkl(c1, tmp_path / "out.pkl", tokenizer=minilm[1])
    c2 = read_mmsa_pkl(tmp_path / "out.pkl")
    assert [x.clip_id for x in c1.clips] == [x.clip_id for x in c2.clips]
    for a, b in zip(c1.clips, c2.clips):
        assert a.text == b.text and a.split == b.split and a.label == pytest.approx(b.label)
        np.testing.assert_array_equal(a.audio, b.audio)
        np.testing.assert_array_equal(a.vision, b.vision)
    with open(tmp_path / "out.pkl", "rb") as f:
        raw = pickle.load(f)
    tb = raw["train"]["text_bert"]
    assert tb.shape == (4, 3, 50)
    assert tb[0, 0, 0] == 101 and tb[0, 1, 0] == 1  # [CLS] id of the bert-base-uncased vocabulary, mask


def test_export_of_named_features_keeps_names(tmp_path):
    c = make_corpus(8)
    write_mmsa_pkl(c, tmp_path / "f.pkl")
    with open(tmp_path / "f.pkl", "rb") as f:
        raw = pickle.load(f)
    assert raw["train"]["audio_names"] == c.audio_names
    assert not (tmp_path / "f.pkl.partial").exists()


def test_bad_pickles(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_mmsa_pkl(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"this is not a pickle")
    with pytest.raises(InputError, match="junk.pkl"):
        read_mmsa_pkl(tmp_path / "junk.pkl")
    with open(tmp_path / "wrong.pkl", "wb") as f:
        pickle.dump({"train": {"raw_text": []}}, f)
    with pytest.raises(InputError, match="lacks key"):
        read_mmsa_pkl(tmp_path / "wrong.pkl")
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(InputError, match="train/valid/test"):
        read_mmsa_pkl(tmp_path / "list.pkl")


def _damaged(data: dict, change) -> dict:
    part = dict(data["train"])
    change(part)
    return {**data, "train": part}


@pytest.mark.parametrize("change, message", [
    (lambda part: part.update(regression_labels=part["regression_labels"][:3]),
     "regression_labels has 3 entries for 4"),
    (lambda part: part.update(audio_lengths=part["audio_lengths"][:2]), "audio_lengths has 2 entries for 4"),
    (lambda part: part.update(raw_text=part["raw_text"][:2]), "raw_text has 2 entries for 4"),
    (lambda part: part.update(audio=[np.zeros((6, 5)), np.zeros((5, 5)), np.zeros((6, 5)), np.zeros((6, 5))]),
     "audio is not one"),
    (lambda part: part.update(vision=np.full((4, 8, 7), "x")), "vision holds <U1 values, not numbers"),
    (lambda part: part.update(regression_labels=np.array(["pos", "neg", "pos", "neg"])),
     "regression_labels must be numbers"),
    (lambda part: part.update(regression_labels=np.array([1.0, np.inf, 0.0, 0.0])),
     "regression_labels holds an infinite"),
    (lambda part: part.update(vision_lengths=[1.0, float("nan"), 2.0, 3.0]), "vision_lengths must be finite lengths"),
    (lambda part: part.update(id=7), "id must hold one entry per clip, got a int"),
])
def test_a_malformed_split_is_refused_naming_the_file_split_and_key(tmp_path, change, message):
    data = write_mmsa_like(tmp_path / "ok.pkl")
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump(_damaged(data, change), f)
    with pytest.raises(InputError, match=message) as err:
        read_mmsa_pkl(tmp_path / "bad.pkl")
    assert "bad.pkl: split 'train'" in str(err.value)
    with open(tmp_path / "none.pkl", "wb") as f:
        pickle.dump({**data, "valid": None}, f)
    with pytest.raises(InputError, match="split 'valid' is a NoneType, not a dict"):
        read_mmsa_pkl(tmp_path / "none.pkl")


def _dump(path, data):
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


def test_a_clip_id_given_twice_is_refused_within_and_across_splits(tmp_path):
    data = write_mmsa_like(tmp_path / "ok.pkl")
    leak = {**data, "test": {**data["test"], "id": data["train"]["id"][:2]}}
    with pytest.raises(InputError, match=r"split 'test': clip id 'vidtrain\$_\$0' is also in split 'train'.*leaks"):
        read_mmsa_pkl(_dump(tmp_path / "leak.pkl", leak))
    twice = _damaged(data, lambda part: part.update(id=np.array(["a", "b", "a", "c"])))
    with pytest.raises(InputError, match="bad.pkl: split 'train': clip id 'a' is twice in that split"):
        read_mmsa_pkl(_dump(tmp_path / "bad.pkl", twice))
    nested = _damaged(data, lambda part: part.update(id=np.array([["a"], ["b"], ["c"], ["d"]])))
    with pytest.raises(InputError, match="id of clip 0 is a ndarray, not one string"):
        read_mmsa_pkl(_dump(tmp_path / "nested.pkl", nested))


def test_split_names_read_as_in_a_label_csv_and_what_is_left_out_is_said(tmp_path, caplog):
    data = write_mmsa_like(tmp_path / "ok.pkl")
    renamed = {"train": data["train"], "dev": data["valid"], "notes": "made by hand"}
    with caplog.at_level(logging.WARNING):
        c = read_mmsa_pkl(_dump(tmp_path / "dev.pkl", renamed))
    assert c.split_sizes() == {"train": 4, "valid": 2, "test": 0}  # dev is the valid split
    assert "key(s) ['notes'] are not train/valid/test splits and are ignored" in caplog.text
    assert "no test split in the file" in caplog.text
    both = {**data, "val": data["valid"]}
    with pytest.raises(InputError, match=r"two keys name the 'valid' split \(\['valid', 'val'\]\)"):
        read_mmsa_pkl(_dump(tmp_path / "both.pkl", both))
    with pytest.raises(InputError, match=r"found keys \['training', 'validation'\]"):
        read_mmsa_pkl(_dump(tmp_path / "names.pkl", {"training": data["train"], "validation": data["valid"]}))
    empty = {**data, "test": {k: (v[:0] if hasattr(v, "__len__") else v) for k, v in data["test"].items()}}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert read_mmsa_pkl(_dump(tmp_path / "empty.pkl", empty)).split_sizes()["test"] == 0
    assert "split 'test' has no clips" in caplog.text


def test_unlabelled_lengths_and_labels_off_the_scale_are_said_or_refused(tmp_path, caplog):
    data = write_mmsa_like(tmp_path / "ok.pkl")
    test = {**data["test"], "regression_labels": np.array([np.nan, 7.5], np.float32),
            "raw_text": np.array([None, float("nan")], dtype=object),
            "audio_lengths": [9, 2]}  # 9 > the 6 frames stored
    with caplog.at_level(logging.WARNING):
        c = read_mmsa_pkl(_dump(tmp_path / "t.pkl", {**data, "test": test}))
    assert "split 'test': 1 of 2 clip(s) have no label (NaN)" in caplog.text
    assert "1 label(s) outside [-3, 3] (e.g. 7.5)" in caplog.text
    assert "1 clip(s) have audio_lengths above the 6 frames stored" in caplog.text
    tests = c.split("test")
    assert [x.label for x in tests] == [None, 7.5] and [x.text for x in tests] == ["", ""]
    assert tests[0].audio.shape[0] == 6
    half = _damaged(data, lambda part: part.update(vision_lengths=[1, 2.5, 3, 4]))
    with pytest.raises(InputError, match=r"split 'train': vision_lengths must be whole numbers of frames "
                                         r"\(clip 'vidtrain\$_\$1' has 2.5\)"):
        read_mmsa_pkl(_dump(tmp_path / "half.pkl", half))


def test_a_label_csv_names_the_line_a_multi_line_record_ends_on_and_labels_off_the_scale(tmp_path, caplog):
    p = tmp_path / "label.csv"
    p.write_text('video_id,clip_id,text,label,mode\nv,1,"two\nlines",1.0,train\nv,2,b,bad,train\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 4: label 'bad'"):
        read_label_csv(p)
    p.write_text("video_id,clip_id,text,label,mode\nv,1,a,10,train\nv,2,b,-3,train\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert [c.label for c in read_label_csv(p).clips] == [10.0, -3.0]
    assert "1 label(s) outside [-3, 3] (e.g. 10)" in caplog.text


def test_an_unlabelled_clip_reads_back_unlabelled(tmp_path):
    """write_mmsa_pkl writes NaN for a clip without a label; reading it back gives no label, as an
    empty label in a label.csv does (not a NaN that would make the loss NaN)."""
    c = make_corpus(8)
    c.clips[0].label = None
    write_mmsa_pkl(c, tmp_path / "f.pkl")
    back = read_mmsa_pkl(tmp_path / "f.pkl")
    by_id = {x.clip_id: x.label for x in back.clips}
    assert by_id[c.clips[0].clip_id] is None
    assert all(v is not None for k, v in by_id.items() if k != c.clips[0].clip_id)


def test_label_csv_with_empty_text(tmp_path, caplog):
    p = tmp_path / "label.csv"
    p.write_text("video_id,clip_id,text,label,mode\n"
                 "v1,1,it was great,2.4,train\n"
                 "v1,2,,0.0,train\n"
                 "v2,1,  ,-1.2,valid\n"
                 "v2,3,meh,-0.4,test\n", encoding="utf-8")
    c = read_label_csv(p)
    assert c.split_sizes() == {"train": 2, "valid": 1, "test": 1}
    assert c.clips[1].text == "" and c.clips[2].text == ""
    assert c.clips[0].clip_id == "v1$_$1"
    assert not c.has_audio
    assert "2 row(s) have empty text" in caplog.text


@pytest.mark.parametrize("content,match", [
    ("video_id,clip_id,text,mode\nv,1,a,train\n", "missing column"),
    ("video_id,clip_id,text,label,mode\nv,1,a,great,train\n", "line 2: label 'great'"),
    ("video_id,clip_id,text,label,mode\nv,1,a,1.0,holdout\n", "line 2: mode"),
    ("video_id,clip_id,text,label,mode\n", "no rows"),
    ("video_id,clip_id,text,label,mode\nv,1,a,1.0,train\nv,2,b,0.0,train\nv,1,c,-1.0,test\n",
     r"line 4: clip '1' of video 'v' is also on line 2"),
])
def test_malformed_label_csv(tmp_path, content, match):
    p = tmp_path / "label.csv"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        read_label_csv(p)


def test_a_label_csv_saved_by_a_spreadsheet_with_a_byte_order_mark_reads(tmp_path):
    p = tmp_path / "label.csv"
    p.write_text("video_id,clip_id,text,label,mode\nv,1,good,1.5,train\n", encoding="utf-8-sig")
    assert p.read_bytes().startswith(b"\xef\xbb\xbf")
    (clip,) = read_label_csv(p).clips
    assert clip.clip_id == "v$_$1" and clip.label == 1.5


def test_load_corpus_dispatch(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_corpus(tmp_path / "nothing.csv")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown corpus type"):
        load_corpus(tmp_path / "x.txt")


# ----------------------------------------------------------------------------- one label.csv reader
def _video_corpus(root, rows):
    """An MMSA-FET corpus: label.csv and Raw/<video_id>/<clip_id>.mpg (GRID clips of the repo)."""
    import shutil

    from tests.extract_fixtures import GRID_CLIPS

    for i, (vid, cid, *_rest) in enumerate(rows):
        (root / "Raw" / vid).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GRID_CLIPS[i % len(GRID_CLIPS)], root / "Raw" / vid / f"{cid}.mpg")
    lines = ["video_id,clip_id,text,label,mode"] + [",".join(r) for r in rows]
    (root / "label.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "label.csv"


def test_the_raw_dir_path_reads_label_csv_like_the_text_path(tmp_path):
    """`--raw-dir` (videos) and a text-only label.csv share one reader: `dev` is `valid` in both."""
    from tests.extract_fixtures import fast_config

    csv_path = _video_corpus(tmp_path / "corpus", [("v1", "1", "bin blue", "1.0", "train"),
                                                   ("v1", "2", "lay red", "-1.0", "dev"),
                                                   ("v2", "1", "place green", "0.5", "Test")])
    text_only = load_corpus(csv_path)
    assert text_only.split_sizes() == {"train": 1, "valid": 1, "test": 1}
    cfg = fast_config("extractors.vision=none", "extractors.text=none")  # audio only: quick
    videos = load_corpus(csv_path, tmp_path / "corpus", cache_dir=tmp_path / "cache", extract_config=cfg,
                         progress=False)
    assert videos.split_sizes() == {"train": 1, "valid": 1, "test": 1}
    assert {c.clip_id: c.split for c in videos.clips} == {c.clip_id: c.split for c in text_only.clips}
    assert videos.has_audio and {c.clip_id: c.label for c in videos.clips} == {"v1$_$1": 1.0, "v1$_$2": -1.0,
                                                                              "v2$_$1": 0.5}
    (tmp_path / "features.pkl").write_bytes(b"")
    with pytest.raises(InputError, match="goes with an MMSA-FET label.csv"):
        load_corpus(tmp_path / "features.pkl", tmp_path / "corpus")


@pytest.mark.parametrize("row,match", [
    ("v1,1,a,nan,train", r"line 2: label 'nan' is not finite"),
    ("v1,1,a,inf,train", r"line 2: label 'inf' is not finite"),
    ("v1,1,a,1.0,holdout", r"line 2: mode 'holdout' is not one of train/valid/test"),
    ("v1,,a,1.0,train", r"line 2: empty video_id or clip_id"),
])
def test_the_raw_dir_path_refuses_bad_rows(tmp_path, row, match):
    from pipeline.corpora.inputs import collect_inputs
    from pipeline.corpora.label_csv import read_mmsa_fet_corpus

    (tmp_path / "Raw").mkdir()
    p = tmp_path / "label.csv"
    p.write_text("video_id,clip_id,text,label,mode\n" + row + "\n", encoding="utf-8")
    for read in (read_label_csv, read_mmsa_fet_corpus, lambda f: collect_inputs([f])):
        with pytest.raises(InputError, match=match) as ei:
            read(p)
        assert str(p) in str(ei.value)
    two = tmp_path / "two.csv"
    two.write_text("video_id,clip_id\nv1,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing column"):
        read_mmsa_fet_corpus(two)


@pytest.mark.parametrize("vid, cid", [("v1", "../x"), ("/etc", "1"), ("v1", ".."), ("v\\1", "1")])
def test_a_clip_id_that_is_a_path_is_refused_where_it_names_a_file(tmp_path, vid, cid):
    """Raw/<video_id>/<clip_id>.<ext>: an id holding a path would point outside Raw/ (or, absolute,
    abort the glob); a text-only corpus has no files and keeps it as a name."""
    from pipeline.corpora.label_csv import read_mmsa_fet_corpus

    (tmp_path / "Raw").mkdir()
    p = tmp_path / "label.csv"
    p.write_text(f"video_id,clip_id,text,label,mode\nok,1,a,1.0,train\n{vid},{cid},a,1.0,train\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 3: (video_id|clip_id) .* is not a file name"):
        read_mmsa_fet_corpus(p)
    assert len(read_label_csv(p).clips) == 2


def test_a_clip_id_with_glob_characters_finds_its_own_file(tmp_path):
    from pipeline.corpora.label_csv import read_mmsa_fet_corpus

    (tmp_path / "Raw" / "v").mkdir(parents=True)
    for name in ("[1].mp4", "1.mp4"):
        (tmp_path / "Raw" / "v" / name).write_bytes(b"")
    p = tmp_path / "label.csv"
    p.write_text("video_id,clip_id,text,label,mode\nv,[1],a,1.0,train\n", encoding="utf-8")
    (item,) = read_mmsa_fet_corpus(p)
    assert item.path.name == "[1].mp4"  # not 1.mp4, which the pattern [1].* would match


# ----------------------------------------------------------------------------- folders of inputs
def test_a_broken_link_in_a_folder_is_listed_not_left_out_unseen(tmp_path):
    from extractors.media import check_file
    from pipeline.corpora.inputs import list_media

    root = tmp_path / "inputs"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (root / "gone.mp4").symlink_to(tmp_path / "moved away.mp4")
    (root / "gone.txt").symlink_to(tmp_path / "moved away.txt")
    (root / "linked.mp4").symlink_to(root / "a.mp4")
    skipped: list = []
    assert list_media(root, skipped) == [root / "a.mp4", root / "gone.mp4", root / "linked.mp4"]
    assert skipped == [(root / "gone.txt", "a broken link: skipped")]
    with pytest.raises(InputError, match="gone.mp4: file not found"):
        check_file(root / "gone.mp4")  # what its extraction reports, as a failure of the batch


def test_a_folder_holds_videos_and_audio_files_and_names_what_it_skips(tmp_path):
    from pipeline.corpora.inputs import collect_inputs, list_media, list_videos
    from pipeline.corpora.label_csv import read_mmsa_fet_corpus

    root = tmp_path / "inputs"
    for rel in ("a.mp4", "b.WAV", "sub/c.mp3", "sub/d.flac", "e.ogg", "f.m4a", "notes.txt", "sub/README",
                ".hidden.wav", ".cache/x.mp4", "sub/.DS_Store"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    media = ["a.mp4", "b.WAV", "e.ogg", "f.m4a", "sub/c.mp3", "sub/d.flac"]
    assert list_media(root) == list_videos(root) == [root / m for m in media]
    skipped: list = []
    items = collect_inputs([root], skipped=skipped)
    assert items == [root / m for m in media]
    assert skipped == [(root / "notes.txt", "not a media file (.txt): skipped"),
                       (root / "sub" / "README", "not a media file (no extension): skipped")]
    assert collect_inputs([root]) == items  # without a list: the same clips, nothing reported
    # a file reached twice (a folder and a file in it, or named twice) is one row, where it first appears
    assert collect_inputs([root / "e.ogg", root, root / "sub" / ".." / "a.mp4"]) == \
        [root / "e.ogg"] + [root / m for m in media if m != "e.ogg"]
    # a file named explicitly is kept (extraction reports what is wrong with it)
    assert collect_inputs([root / "notes.txt"], skipped=skipped) == [root / "notes.txt"]
    # a folder with no media file at all: an error that says audio files count too
    only_text = tmp_path / "texts"
    only_text.mkdir()
    (only_text / "a.txt").write_text("x")
    (only_text / "b.csv").write_text("x")
    with pytest.raises(InputError) as err:
        collect_inputs([only_text], skipped=[])
    msg = str(err.value)
    assert str(only_text) in msg and "no video files" in msg and ".wav" in msg and "2 other file(s)" in msg
    # an MMSA-FET corpus may have audio files under Raw/
    (tmp_path / "corpus" / "Raw" / "v1").mkdir(parents=True)
    (tmp_path / "corpus" / "Raw" / "v1" / "1.wav").write_bytes(b"x")
    (tmp_path / "corpus" / "label.csv").write_text("video_id,clip_id,text,label,mode\nv1,1,hi,1.0,train\n")
    (item,) = read_mmsa_fet_corpus(tmp_path / "corpus" / "label.csv")
    assert item.path == tmp_path / "corpus" / "Raw" / "v1" / "1.wav"
