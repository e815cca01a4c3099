"""Tests of the slide deck: it builds, it fits its frames, its code runs.

The deck is built once per test run with ``make`` in ``slides/`` into a
temporary folder, which needs the Debian packages in
``slides/apt-packages.txt``. Every fenced Python block in ``slides.md`` is
run by ``slide_code_runner.py`` with this interpreter, so with the pinned
releases when pytest runs from the workshop's virtual environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SLIDES_DIR = REPO_ROOT / "slides"
SLIDES_SOURCE = SLIDES_DIR / "slides.md"
PREVIEW_DIR = REPO_ROOT / "build" / "slides-preview"

# The deck has 50 pages (title, 4 section pages, 45 frames), and the range
# leaves room for edits.
MIN_PAGES = 35
MAX_PAGES = 70
# Maximum length of a code line that fits a frame at the code font size.
MAX_CODE_LINE_LENGTH = 64
# Blocks marked .fragment are shown but not run, so keep them rare.
MAX_FRAGMENTS = 5
# Seconds that all code chains together, or make_plots.py, may take. The
# chains took about 20 s on two CPU cores.
CODE_TIMEOUT = 600
CODE_RUNNER = REPO_ROOT / "tests" / "slide_code_runner.py"
# Files that slide code reads by paths relative to a keras/ notebook, such
# as "images/three.png". Each chain's working folder gets a copy.
NOTEBOOK_FILES = REPO_ROOT / "keras" / "images"
# Title, XOR diagram, XOR regions, chain rule, MNIST digits, HIGGS ROC.
PREVIEW_PAGES = (1, 11, 13, 21, 36, 48)

FENCE_OPEN = re.compile(r"^```\s*(?:\{(?P<attrs>[^}]*)\}|(?P<lang>[\w+-]+))?\s*$")
KNOWN_CLASSES = {"python", "fragment", "continue", "bash"}


@dataclass
class CodeBlock:
    """One fenced code block of slides.md."""

    line: int
    classes: list[str]
    lines: list[str] = field(default_factory=list)

    @property
    def is_python(self) -> bool:
        return "python" in self.classes


def read_code_blocks(text: str) -> list[CodeBlock]:
    """Parse the fenced code blocks of a pandoc markdown text."""
    blocks: list[CodeBlock] = []
    current: CodeBlock | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if current is None:
            match = FENCE_OPEN.match(line)
            if match:
                if match["attrs"] is not None:
                    classes = [
                        word[1:]
                        for word in match["attrs"].split()
                        if word.startswith(".")
                    ]
                else:
                    classes = [match["lang"]] if match["lang"] else []
                current = CodeBlock(number, classes)
        elif line.strip() == "```":
            blocks.append(current)
            current = None
        else:
            current.lines.append(line)
    assert current is None, (
        f"slides.md: code block at line {current.line} is not closed"
    )
    return blocks


def group_python_chains(blocks: list[CodeBlock]) -> list[list[CodeBlock]]:
    """Group the runnable Python blocks: a .continue block joins the one before."""
    chains: list[list[CodeBlock]] = []
    for block in blocks:
        if not block.is_python or "fragment" in block.classes:
            continue
        if "continue" in block.classes:
            assert chains, (
                f"slides.md:{block.line}: .continue block with nothing before"
            )
            chains[-1].append(block)
        else:
            chains.append([block])
    return chains


CODE_BLOCKS = read_code_blocks(SLIDES_SOURCE.read_text(encoding="utf-8"))
PYTHON_CHAINS = group_python_chains(CODE_BLOCKS)


# --------------------------------------------------------------------------
# Code on the slides
# --------------------------------------------------------------------------


def test_code_blocks_found() -> None:
    assert len(PYTHON_CHAINS) >= 10, "expected at least 10 runnable code examples"


def test_code_block_classes_known() -> None:
    for block in CODE_BLOCKS:
        unknown = set(block.classes) - KNOWN_CLASSES
        assert not unknown, f"slides.md:{block.line}: unknown class {sorted(unknown)}"
        assert block.classes, f"slides.md:{block.line}: code block without a language"


def test_code_lines_fit_frame() -> None:
    for block in CODE_BLOCKS:
        for offset, line in enumerate(block.lines, start=1):
            assert len(line) <= MAX_CODE_LINE_LENGTH, (
                f"slides.md:{block.line + offset}: code line of {len(line)} "
                f"characters, at most {MAX_CODE_LINE_LENGTH} fit a frame"
            )


def test_fragments_are_few() -> None:
    fragments = [block.line for block in CODE_BLOCKS if "fragment" in block.classes]
    assert len(fragments) <= MAX_FRAGMENTS, (
        f"{len(fragments)} code blocks are marked .fragment (lines {fragments}); "
        f"at most {MAX_FRAGMENTS} may be left untested"
    )


def chain_id(chain: list[CodeBlock]) -> str:
    return f"line{chain[0].line}"


@pytest.fixture(scope="module")
def chain_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Run every chain with slide_code_runner.py and return each one's traceback.

    All chains share one Python process, so TensorFlow is imported once, but
    each gets a fresh namespace and its own working folder, which contains a
    copy of keras/images/. The repository root is on the module path.
    """
    root = tmp_path_factory.mktemp("slide_code")
    chains = [
        {
            "id": chain_id(chain),
            "work_dir": str(root / chain_id(chain)),
            "blocks": [
                {"line": block.line + 1, "code": "\n".join(block.lines)}
                for block in chain
            ],
        }
        for chain in PYTHON_CHAINS
    ]
    for chain in chains:
        shutil.copytree(NOTEBOOK_FILES, Path(chain["work_dir"]) / NOTEBOOK_FILES.name)
    chains_path = root / "chains.json"
    results_path = root / "results.json"
    chains_path.write_text(json.dumps(chains), encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env.pop("KERAS_BACKEND", None)
    # The repository root on the path lets slide code import common, as the
    # notebooks do after sys.path.insert(0, "..").
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    result = subprocess.run(
        [sys.executable, str(CODE_RUNNER), str(chains_path), str(results_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=CODE_TIMEOUT,
    )
    output = f"{result.stdout[-1000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"slide_code_runner.py failed:\n{output}"
    return json.loads(results_path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("chain", PYTHON_CHAINS, ids=map(chain_id, PYTHON_CHAINS))
def test_code_chain_runs(
    chain: list[CodeBlock], chain_failures: dict[str, str | None]
) -> None:
    failure = chain_failures[chain_id(chain)]
    lines = ", ".join(str(block.line) for block in chain)
    assert failure is None, f"code from slides.md lines {lines} failed:\n{failure}"


# --------------------------------------------------------------------------
# The built deck
# --------------------------------------------------------------------------


@dataclass
class DeckBuild:
    """Paths of one build of the deck."""

    pdf: Path
    log: Path
    tex: Path


def run_make(build_dir: Path, slides_dir: Path = SLIDES_DIR):
    """Build the deck with make into ``build_dir`` and return the finished process."""
    return subprocess.run(
        [
            "make",
            "-C",
            str(slides_dir),
            f"BUILD_DIR={build_dir}",
            f"PDF={build_dir / 'slides.pdf'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def require_tools() -> None:
    """Fail with the install hint when a build tool is missing."""
    for tool in ("make", "pandoc", "pdflatex", "pdfinfo", "pdftoppm"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} not found: install the Debian packages listed in "
                f"{SLIDES_DIR / 'apt-packages.txt'}"
            )


@pytest.fixture(scope="module")
def deck(tmp_path_factory: pytest.TempPathFactory) -> DeckBuild:
    require_tools()
    build_dir = tmp_path_factory.mktemp("slides")
    result = run_make(build_dir)
    assert result.returncode == 0, (
        f"make in slides/ failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return DeckBuild(
        pdf=build_dir / "slides.pdf",
        log=build_dir / "slides.log",
        tex=build_dir / "slides.tex",
    )


def page_count(pdf: Path) -> int:
    info = subprocess.run(
        ["pdfinfo", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE)
    assert match, f"pdfinfo printed no page count for {pdf}"
    return int(match[1])


def test_deck_pdf_exists(deck: DeckBuild) -> None:
    assert deck.pdf.is_file()
    assert deck.pdf.stat().st_size > 0


def test_deck_page_count(deck: DeckBuild) -> None:
    pages = page_count(deck.pdf)
    assert pages >= MIN_PAGES, f"only {pages} pages in {deck.pdf}"
    assert pages <= MAX_PAGES, f"{pages} pages in {deck.pdf}"


def test_log_has_no_overfull_boxes(deck: DeckBuild) -> None:
    log = deck.log.read_text(encoding="latin-1")
    overfull = [line for line in log.splitlines() if line.startswith("Overfull")]
    assert not overfull, f"content overflows in {deck.log}: {overfull}"


def test_log_has_no_missing_characters(deck: DeckBuild) -> None:
    log = deck.log.read_text(encoding="latin-1")
    missing = [line for line in log.splitlines() if "Missing character" in line]
    assert not missing, f"characters dropped in {deck.log}: {missing}"


def referenced_images() -> list[str]:
    """List the figure paths and notebook figure names that slides.md uses."""
    text = SLIDES_SOURCE.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\((\.\./figures/[^)\s]+)\)", text)
    notebook = re.findall(r"\\notebookfigure\{([\w-]+)\}", text)
    return sorted(set(images)) + sorted(set(notebook))


def referenced_diagrams() -> list[str]:
    text = SLIDES_SOURCE.read_text(encoding="utf-8")
    return sorted(set(re.findall(r"\\input\{(diagrams/[\w-]+\.tex)\}", text)))


@pytest.mark.parametrize("image", referenced_images())
def test_image_embedded(deck: DeckBuild, image: str) -> None:
    """Every figure on the slides was included from its file, not a placeholder."""
    log = deck.log.read_text(encoding="latin-1")
    if not image.startswith("../"):
        if f"Placeholder: figure {image} not yet generated" in log:
            pytest.skip(
                f"notebook figure {image} not yet generated: run the notebooks, "
                "then make figures in slides/"
            )
        image = f"../figures/{image}.png"
    # pdflatex logs each included graphics file as <path> or <path, id=...>.
    assert re.search(rf"<{re.escape(image)}[>,]", log), (
        f"{image} was not embedded; see {deck.log}"
    )


@pytest.mark.parametrize("diagram", referenced_diagrams())
def test_diagram_included(deck: DeckBuild, diagram: str) -> None:
    log = deck.log.read_text(encoding="latin-1")
    assert f"(./{diagram}" in log, f"{diagram} was not read; see {deck.log}"


def test_preview_pages_rendered(deck: DeckBuild, capsys) -> None:
    """Render a few pages to PNG under build/slides-preview/ for a person to look at."""
    PREVIEW_DIR.mkdir(parents=True, exist_ok=True)
    for old_page in PREVIEW_DIR.glob("page-*.png"):
        old_page.unlink()
    pages = page_count(deck.pdf)
    for page in PREVIEW_PAGES:
        if page > pages:
            continue
        prefix = PREVIEW_DIR / f"page-{page:02d}"
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "80",
                "-f",
                str(page),
                "-l",
                str(page),
                "-singlefile",
                str(deck.pdf),
                str(prefix),
            ],
            check=True,
        )
        assert prefix.with_suffix(".png").is_file()
    with capsys.disabled():
        print(f"\nslides: preview pages written to {PREVIEW_DIR}")


def test_make_plots_writes_figures(tmp_path: Path) -> None:
    """Run figures/make_plots.py into a scratch folder, with no notebook output."""
    env = dict(
        os.environ,
        WORKSHOP_SIZE="quick",
        WORKSHOP_OUTPUT=str(tmp_path / "output"),
        TF_CPP_MIN_LOG_LEVEL="2",
        MPLBACKEND="Agg",
    )
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "figures" / "make_plots.py"),
            "--output-dir",
            str(tmp_path / "figures"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=CODE_TIMEOUT,
    )
    assert result.returncode == 0, f"make_plots.py failed:\n{result.stderr[-3000:]}"
    for name in (
        "xor_regions",
        "gaussian_data",
        "gaussian_history",
        "gaussian_boundary",
    ):
        assert (tmp_path / "figures" / f"{name}.pdf").is_file(), f"{name}.pdf missing"
    assert "4 notebook figures not yet generated" in result.stdout


# --------------------------------------------------------------------------
# Failures stop the build with a clear message
# --------------------------------------------------------------------------


@pytest.fixture
def slides_copy(tmp_path: Path) -> Path:
    """Copy slides/ and figures/ into a scratch repository for breaking."""
    require_tools()
    shutil.copytree(
        SLIDES_DIR,
        tmp_path / "slides",
        ignore=shutil.ignore_patterns("build", "slides.pdf"),
    )
    shutil.copytree(REPO_ROOT / "figures", tmp_path / "figures")
    return tmp_path / "slides"


def append_frame(slides_dir: Path, body: str) -> None:
    source = slides_dir / "slides.md"
    source.write_text(
        source.read_text(encoding="utf-8") + f"\n## Broken frame\n\n{body}\n",
        encoding="utf-8",
    )


def test_missing_figure_stops_build(slides_copy: Path) -> None:
    append_frame(slides_copy, "![](../figures/no_such_plot.pdf)")
    result = run_make(slides_copy / "build", slides_copy)
    assert result.returncode != 0
    assert "figure ../figures/no_such_plot.pdf is missing" in result.stderr


def test_unicode_character_stops_build(slides_copy: Path) -> None:
    # U+2203 THERE EXISTS has no definition for pdflatex's utf8 input.
    append_frame(slides_copy, "A symbol the engine cannot typeset: \u2203")
    result = run_make(slides_copy / "build", slides_copy)
    assert result.returncode != 0
    assert "Unicode character" in result.stderr
    assert "cannot typeset that Unicode character" in result.stderr


def test_unknown_package_stops_build(slides_copy: Path) -> None:
    theme = slides_copy / "workshop-theme.tex"
    theme.write_text(
        theme.read_text(encoding="utf-8") + "\\usepackage{nosuchpackage}\n",
        encoding="utf-8",
    )
    result = run_make(slides_copy / "build", slides_copy)
    assert result.returncode != 0
    assert "nosuchpackage.sty' not found" in result.stderr
    assert "a LaTeX package is not installed" in result.stderr
