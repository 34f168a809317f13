"""Generate ``sentences.csv``: a small, licence-clean sentiment corpus for the demo and tests.

Every sentence is built from templates written for this project (no third-party text). The
label is the sentiment of the chosen phrase in [-3, 3] (the MOSI scale), with a little
deterministic jitter, and exactly 0 for the neutral phrases. It exists to show the pipeline
working end to end; it says nothing about performance on real opinion videos.

    python examples/sample_corpus/make_sentences.py   # rewrites sentences.csv next to it
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SUBJECTS = ["the movie", "this film", "the acting", "the plot", "the ending", "the soundtrack",
            "the story", "the characters", "the dialogue", "the camera work", "the script", "the cast"]
PHRASES = {
    3: ["absolutely brilliant", "a true masterpiece", "wonderful beyond words", "the best thing I have seen"],
    2: ["great", "really enjoyable", "very moving", "genuinely funny"],
    1: ["pretty good", "decent", "nice enough", "fairly entertaining"],
    0: ["okay I guess", "about what I expected", "neither good nor bad", "just average"],
    -1: ["a bit dull", "somewhat weak", "not that great", "a little too slow"],
    -2: ["bad", "really boring", "poorly done", "quite annoying"],
    -3: ["absolutely terrible", "a complete disaster", "the worst I have ever seen", "unbearable"],
}
FORMS = ["{s} was {p}", "i thought {s} was {p}", "honestly {s} is {p}", "to me {s} felt {p}",
         "well um {s} was {p}", "i have to say {s} was {p}"]


def make(n: int = 360, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        score = rng.choice(list(PHRASES))
        text = rng.choice(FORMS).format(s=rng.choice(SUBJECTS), p=rng.choice(PHRASES[score]))
        label = 0.0 if score == 0 else max(-3.0, min(3.0, score + rng.choice([-0.4, -0.2, 0.0, 0.2, 0.4])))
        mode = "train" if i % 6 < 4 else ("valid" if i % 6 == 4 else "test")
        rows.append({"video_id": f"sample{i // 10:03d}", "clip_id": str(i % 10 + 1), "text": text,
                     "label": f"{label:.1f}", "mode": mode})
    return rows


if __name__ == "__main__":
    out = Path(__file__).with_name("sentences.csv")
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["video_id", "clip_id", "text", "label", "mode"])
        w.writeheader()
        w.writerows(make())
    print(f"wrote {out}")
