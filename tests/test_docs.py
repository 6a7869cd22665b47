"""README.md and docs/*.md as a user reads them: every relative link leads somewhere, and every
command a user is told to type parses.

Links: each `[text](path#anchor)` names an existing file in the repository, and its anchor is a
heading of the target as GitHub spells it. Commands: in each ```bash block, every `dvc` command
parses with DVC's own CLI parser; each `dvc exp run`'s `-S` sets, sweeps expanded as DVC expands
them, give a params.yaml that `study.params.load` accepts, and its targets are dvc.yaml stages;
each `python -m X` names a module that exists. Set-up lines (`bash run.sh ...`, `source ...`)
are run.sh's own tests' business.
"""
from __future__ import annotations

import contextlib
import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import yaml

from study.params import ParamsError, load
from tests.conftest import REPO

DOC_PAGES = ("pipeline.md", "experiments.md", "hardware.md", "results.md", "troubleshooting.md")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200   # a front page; the rest is in docs/

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)
URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")

SETUP = {"bash", "source"}
# What a placeholder of the docs stands for when its command is checked
PLACEHOLDERS = {"<its md5>": "c58f30108f718f92721af3b95e74349a", "<exp-a>": "exp-a", "<exp-b>": "exp-b",
                "<experiment>": "an-experiment"}
PLACEHOLDER = re.compile(r"<[a-z][\w' -]*>")


# ---- links -------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: link text kept, lowercase, punctuation dropped
    but for - and _, each space a -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a page (outside code blocks); a repeated slug gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        s = slug(heading)
        out.add(f"{s}-{seen[s]}" if s in seen else s)
        seen[s] = seen.get(s, 0) + 1
    return out


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """'page: target: why' for each relative link of a page that leads nowhere."""
    prose = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    problems = []
    for target in LINK.findall(prose):
        if URL_SCHEME.match(target):
            continue                                       # https:, mailto:: not ours to check
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(root.resolve()) or not dest.exists():
            problems.append(f"{page.name}: {target}: no such file in the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest.read_text())):
            problems.append(f"{page.name}: {target}: no heading #{anchor} in {dest.name}")
    return problems


def test_slugs_are_the_anchors_github_makes():
    assert slug("Seeds: does the center loss help? (`python -m study.summary`)") == \
        "seeds-does-the-center-loss-help-python--m-studysummary"
    assert slug("Time to accuracy on all 45,000 training images") == "time-to-accuracy-on-all-45000-training-images"
    assert slug("Mixed precision: dtype_policy") == "mixed-precision-dtype_policy"
    assert slug("The original study's hyperparameter table") == "the-original-studys-hyperparameter-table"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## B\n") == {"a", "a-1", "b"}


def test_the_link_check_rejects_made_up_links(tmp_path):
    (tmp_path / "b.md").write_text("# Title\n\n## Real heading\n")
    page = tmp_path / "a.md"
    page.write_text("## Own heading\n"
                    "[ok](b.md#real-heading) [ok](#own-heading) [ok](b.md) ![ok](b.md) [web](https://x.org/#y)\n"
                    "`[in code](missing.md)`\n```\n[in a block](missing.md)\n```\n"
                    "[bad](missing.md) [bad](b.md#no-such-heading) ![bad](#nowhere) [bad](../outside.md)\n")
    (tmp_path.parent / "outside.md").write_text("# Outside\n")
    assert broken_links(page, root=tmp_path) == [
        "a.md: missing.md: no such file in the repository",
        "a.md: b.md#no-such-heading: no heading #no-such-heading in b.md",
        "a.md: #nowhere: no heading #nowhere in a.md",
        "a.md: ../outside.md: no such file in the repository"]


def test_every_relative_link_and_anchor_in_readme_and_docs_resolves():
    assert {p.name for p in PAGES} >= {"README.md", *DOC_PAGES}
    assert [problem for page in PAGES for problem in broken_links(page)] == []


def test_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= README_MAX_LINES


# ---- commands ----------------------------------------------------------------------------

def commands(block: str) -> list[list[str]]:
    """Each simple command of a bash block as its argv, as bash would run it: `\\` continuations
    joined, comments dropped, `name=(...)` arrays expanded where "${name[@]}" stands, and
    `&&`, `||`, `;`, `|` splitting commands."""
    arrays: dict[str, list[str]] = {}
    out, pending = [], ""
    for line in block.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + "\n"
            continue
        pending += line
        words = shlex.split(pending, comments=True)
        array = re.fullmatch(r"(\w+)=\((.*)", words[0], re.S) if words else None
        if array and not words[-1].endswith(")"):
            pending += "\n"                                # the array goes on in the next line
            continue
        pending = ""
        if array:
            items = [array.group(2), *words[1:]]
            items[-1] = items[-1][:-1]
            arrays[array.group(1)] = [w for w in items if w]
            continue
        argv: list[str] = []
        for word in words:
            ref = re.fullmatch(r"\$\{(\w+)\[@\]\}", word)
            argv += arrays[ref.group(1)] if ref else [word]
        cmd: list[str] = []
        for word in [*argv, ";"]:
            if word in ("&&", "||", ";", "|"):
                if cmd:
                    out.append(cmd)
                cmd = []
            elif cmd or not re.fullmatch(r"\w+=.*", word, re.S):   # VAR=value before a command
                cmd.append(word)
    return out


def _stages() -> set[str]:
    return set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def _exp_run_problems(args, where: str, tmp_path: Path) -> list[str]:
    """Why a parsed `dvc exp run` would fail: an unknown target, a sweep without --queue, or a
    -S combination that DVC or study.params refuses (each applied to a copy of params.yaml
    with DVC's own override code, then loaded with the project's loader)."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides, get_hydra_sweeps, to_hydra_overrides
    from hydra.errors import OverrideParseException

    problems = [f"{where}: no stage {t!r} in dvc.yaml" for t in args.targets or []
                if t.split("@", 1)[0] not in _stages()]
    overrides = to_path_overrides(args.set_param or [])
    if set(overrides) - {"params.yaml"}:
        return [*problems, f"{where}: sets params of another file: {sorted(overrides)}"]
    try:
        sweep = any(o.is_sweep_override() for o in to_hydra_overrides(overrides.get("params.yaml", [])))
    except OverrideParseException as e:
        return [*problems, f"{where}: DVC cannot parse the -S values ({str(e).splitlines()[0]})"]
    if sweep and not args.queue:
        return [*problems, f"{where}: a sweep needs --queue"]
    params = tmp_path / "params.yaml"
    for combination in get_hydra_sweeps(overrides) if sweep else [overrides]:
        shutil.copyfile(REPO / "params.yaml", params)
        try:
            apply_overrides(params, combination.get("params.yaml", []))
            load(params)
        except (InvalidArgumentError, ParamsError) as e:
            problems.append(f"{where}: {combination.get('params.yaml')}: {e}")
    return problems


@contextlib.contextmanager
def _dvc_logger_off():
    """Logging off for the block: DVC's handlers may hold a stream pytest has closed."""
    import logging
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def command_problems(block: str, where: str, tmp_path: Path) -> list[str]:
    """'where: command: why' for each command of a bash block that would not run as written."""
    from dvc.cli import DvcParserError, parse_args

    unknown = set(PLACEHOLDER.findall(block)) - set(PLACEHOLDERS)
    if unknown:
        return [f"{where}: placeholder(s) {sorted(unknown)}: give each a stand-in in PLACEHOLDERS"]
    for placeholder, value in PLACEHOLDERS.items():
        block = block.replace(placeholder, value)
    problems = []
    for argv in commands(block):
        line = f"{where}: {shlex.join(argv)}"
        if argv[0] in SETUP:
            continue
        if argv[0] == "dvc":
            try:
                with _dvc_logger_off():   # its parser logs refusals to handlers an earlier in-process DVC set up
                    args = parse_args(argv[1:])
            except (SystemExit, DvcParserError):
                problems.append(f"{line}: DVC's parser refuses it")
                continue
            if args.func.__name__ == "CmdExperimentsRun":
                problems += _exp_run_problems(args, line, tmp_path)
        elif Path(argv[0]).name.startswith("python") and argv[1:2] == ["-m"]:
            if importlib.util.find_spec(argv[2]) is None:
                problems.append(f"{line}: no module {argv[2]}")
    return problems


def _bash_blocks(page: Path) -> list[tuple[str, str]]:
    """(where, text) of each ```bash block of a page."""
    text = page.read_text()
    return [(f"{page.name}:{text[:m.start()].count(chr(10)) + 1}", m.group(2))
            for m in FENCE.finditer(text) if m.group(1) == "bash"]


def test_commands_split_as_bash_splits_them():
    block = ('recipe=(-S a=1   # the shared keys\n'
             '        -S b=2)\n'
             'X=1 dvc exp run "${recipe[@]}" \\\n'
             "    -S 'c=range(0,3)' && dvc queue start   # then run\n"
             'python -m study.summary | tee out.txt\n')
    assert commands(block) == [["dvc", "exp", "run", "-S", "a=1", "-S", "b=2", "-S", "c=range(0,3)"],
                               ["dvc", "queue", "start"], ["python", "-m", "study.summary"], ["tee", "out.txt"]]


def test_the_command_check_rejects_made_up_commands(tmp_path):
    block = ("bash run.sh test -m 'not slow'\n"
             "dvc exp run --queue -S 'center_loss.variant=center,island' -S 'seed=range(0,2)' -S data.md5=<its md5>\n"
             "dvc exp run -S optimizer=adagrad\n"
             "dvc exp run -S 'seed=range(0,3)'\n"
             "dvc exp run --queue -S 'epochs=10,5000'\n"
             "dvc exp run -S no_such_key=1\n"
             "dvc exp run -S 'seed=range(0,'\n"
             "dvc exp run no_such_stage\n"
             "dvc exp show --no-such-flag\n"
             "python -m study.no_such_module\n")
    problems = command_problems(block, "x.md:1", tmp_path)
    assert [p.split(": ", 2)[1] for p in problems] == [
        "dvc exp run -S optimizer=adagrad", "dvc exp run -S 'seed=range(0,3)'",
        "dvc exp run --queue -S epochs=10,5000", "dvc exp run -S no_such_key=1", "dvc exp run -S 'seed=range(0,'",
        "dvc exp run no_such_stage", "dvc exp show --no-such-flag", "python -m study.no_such_module"]
    assert "epochs = 5000 is not allowed" in problems[2]
    assert command_problems("dvc exp run -S data.md5=<some md5>\n", "x.md:1", tmp_path) == [
        "x.md:1: placeholder(s) ['<some md5>']: give each a stand-in in PLACEHOLDERS"]


def test_every_command_in_readme_and_docs_parses_and_its_params_validate(tmp_path):
    blocks = [b for page in PAGES for b in _bash_blocks(page)]
    readme = [" ".join(c) for where, text in blocks if where.startswith("README") for c in commands(text)]
    # the contract's commands are on the front page
    assert "dvc exp run --queue -S center_loss.variant=center,island,contrastive -S seed=range(0,3)" in readme
    assert "dvc exp run --queue -S seed=range(0,5)" in readme and "python -m study.summary" in readme
    assert [p for where, text in blocks for p in command_problems(text, where, tmp_path)] == []
