"""The README is the front door (issue 31, item 4): at most 250 lines, the two set-up commands
first, a link to every page of docs/; and every relative link of the project's Markdown (README.md,
docs/, docker/README.md, the default model's card) reaches a file that exists, and its #anchor a
heading of that file (GitHub's slugs). Plain text parsing: no network, no rendering."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 250
SETUP_COMMANDS = (
    "bash scripts/setup.sh && .venv/bin/senbert demo            "
    "# set up, then run the main job on the shipped samples\n"
    "bash scripts/setup.sh --dev && .venv/bin/python -m pytest -q   "
    "# set up (with test extras), then run the tests\n"
)


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The Markdown whose links are checked."""
    files = [root / "README.md", *sorted((root / "docs").rglob("*.md")),
             root / "docker" / "README.md", root / "pipeline" / "default_model" / "MODEL_CARD.md"]
    return [f for f in files if f.is_file()]


_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], None
    for no, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            continue
        out.append((no, line))
    return out


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks, in order."""
    blocks, current, fence = [], [], None
    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence, current = m.group(1)[0] * len(m.group(1)), []
            continue
        if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append("".join(current))
            fence = None
        else:
            current.append(line)
    return blocks


_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK_IN_TEXT = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""", re.I)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the link texts kept, markup and punctuation dropped, lower
    case, spaces to '-'."""
    text = _LINK_IN_TEXT.sub(r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a file offers: its headings' slugs (a repeated one gets -1, -2 ...) and
    explicit HTML anchors."""
    seen: dict[str, int] = {}
    out = set(_HTML_ANCHOR.findall(text))
    for _, line in prose_lines(text):
        m = _HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(2))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


# [text](target) and ![alt](target), the text may run over lines; [ref]: target definitions
_INLINE = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto: ...


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link outside fenced code blocks."""
    lines = prose_lines(text)
    joined = "\n".join(line for _, line in lines)
    starts, pos = [], 0
    for _, line in lines:
        starts.append(pos)
        pos += len(line) + 1
    out = []
    for m in _INLINE.finditer(joined):
        i = max(k for k, s in enumerate(starts) if s <= m.start())
        out.append((lines[i][0], m.group(1)))
    for no, line in lines:
        m = _DEFINITION.match(line)
        if m:
            out.append((no, m.group(1)))
    return out


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    """Every relative link of ``files`` whose file is missing or whose #anchor is not a heading
    of it, as 'file:line: target (why)'."""
    cache: dict[Path, set[str]] = {}
    bad = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        for no, target in links(text):
            if _EXTERNAL.match(target):
                continue
            path, _, anchor = target.partition("#")
            dest = (f.parent / unquote(path)).resolve() if path else f.resolve()
            where = f"{f.relative_to(root)}:{no}: {target}"
            if not dest.exists():
                bad.append(f"{where} (no such file)")
                continue
            if anchor and dest.suffix == ".md":
                if dest not in cache:
                    cache[dest] = anchors(dest.read_text(encoding="utf-8"))
                if unquote(anchor) not in cache[dest]:
                    bad.append(f"{where} (no heading #{anchor} in {dest.name})")
    return bad


def test_every_relative_link_resolves() -> None:
    files = markdown_files()
    assert README in files and len(files) >= 5
    assert broken_links(files) == []


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines: move detail to docs/"


def test_readme_starts_with_the_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = code_blocks(text)[0]
    assert first_block == SETUP_COMMANDS
    # and nothing but the title comes before it
    assert text.startswith("# ") and text.index("```") < text.index("\n## ")


def test_readme_links_every_docs_page() -> None:
    linked = {(README.parent / unquote(t.partition("#")[0])).resolve()
              for _, t in links(README.read_text(encoding="utf-8")) if not _EXTERNAL.match(t)}
    missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert missing == [], f"docs pages the README does not link: {missing}"


# --- the checker itself: it must see what it is for -------------------------------------------

def test_slugs_follow_github() -> None:
    assert slug("Layout (data flows one way)") == "layout-data-flows-one-way"
    assert slug("Missing and silent streams: masked modalities") == "missing-and-silent-streams-masked-modalities"
    assert slug("Whisper sizes: `asr.model: base | small`") == "whisper-sizes-asrmodel-base--small"
    assert slug("Parameter-efficient fine-tuning (LoRA)") == "parameter-efficient-fine-tuning-lora"
    assert slug("Training, evaluation, prediction") == "training-evaluation-prediction"
    assert slug("In short: `senbert extract`") == "in-short-senbert-extract"
    text = "# A\n\n## Tests\n\n```\n# not a heading\n```\n\n## Tests\n"
    assert anchors(text) == {"a", "tests", "tests-1"}


@pytest.mark.parametrize("body, why", [
    ("see [the page](missing.md)", "no such file"),
    ("see [the page](other.md#no-such-heading)", "no heading #no-such-heading"),
    ("see [a section](#nowhere)", "no heading #nowhere"),
    ("a link over\ntwo lines: [the\npage](gone/other.md)", "no such file"),
    ("![an image](images/none.png)", "no such file"),
    ("[ref]: missing.md", "no such file"),
])
def test_a_broken_link_is_found(tmp_path: Path, body: str, why: str) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A heading\n")
    page = tmp_path / "page.md"
    page.write_text(f"# Page\n\n## Here\n\n{body}\n")
    bad = broken_links([page], tmp_path)
    assert len(bad) == 1 and why in bad[0], bad


def test_good_links_pass(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A heading: `with code`\n")
    page = tmp_path / "README.md"
    page.write_text("# Page\n\n## Here\n\n[a](docs/other.md#a-heading-with-code) [b](#here) "
                    "[c](https://example.org/x) [d](docs/) [e](docs/other.md)\n\n"
                    "```\n[not a link](nowhere.md)\n```\n")
    assert broken_links([page], tmp_path) == []


def test_a_broken_link_in_a_copy_of_the_readme_is_found(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    assert "(docs/training.md)" in text
    copy = ROOT / "README.md"  # resolve links from the real tree, read the edited copy
    edited = tmp_path / "README.md"
    edited.write_text(text.replace("(docs/training.md)", "(docs/no-such-page.md)", 1))
    for d in ("docs", "pipeline", "docker", "examples", "scripts"):
        if (ROOT / d).exists():
            (tmp_path / d).symlink_to(ROOT / d)
    bad = broken_links([edited], tmp_path)
    assert bad and all("no-such-page" in b for b in bad), bad
    assert broken_links([copy]) == []
