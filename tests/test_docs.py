"""The documentation holds together: links resolve, cited paths exist, Sphinx builds.

Three checks, all offline:

* every relative link in README.md, CHANGELOG.md, docs/**/*.md and configs/**/README.md
  names a file of the repository (and, for ``page.md#anchor``, a heading of that page
  by its GitHub-style slug); external http(s) links are not fetched, only parsed;
* every ``configs/....py`` and ``tools/....py|.sh`` path that README.md and docs/*.md
  cite in code (inline or in a code block) exists, so a rename cannot leave stale paths;
* ``sphinx -W`` builds docs/ (any warning, e.g. a broken cross-reference, fails it).
"""
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent

FENCE = re.compile(r'^\s*(```|~~~)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
INLINE_CODE = re.compile(r'(`+)(.+?)\1')
# [text](target) and ![alt](target), with an optional "title"; text may hold `code`.
INLINE_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)')
REFERENCE_DEF = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$')
CITED_PATH = re.compile(r'(?<![\w./<-])((?:configs/[\w./-]+\.py)|(?:tools/[\w./-]+\.(?:py|sh)))\b')


def doc_files():
    files = [REPO / 'README.md', REPO / 'CHANGELOG.md']
    files += sorted((REPO / 'docs').rglob('*.md'))
    files += sorted((REPO / 'configs').rglob('README.md'))
    return [f for f in files if '_build' not in f.parts]


def split_prose_and_code(text):
    """(prose lines, code-block lines) of a Markdown text: fenced blocks are code."""
    prose, code, in_fence = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        (code if in_fence else prose).append(line)
    return prose, code


def github_slug(heading):
    """The anchor GitHub (and myst's heading anchors) give a heading."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links -> their text
    text = text.replace('`', '')
    text = re.sub(r'(\*\*|__|\*)', '', text)
    text = text.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def heading_slugs(path):
    prose, _ = split_prose_and_code(path.read_text(encoding='utf-8'))
    slugs, seen = set(), {}
    for line in prose:
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        if slug in seen:  # GitHub numbers repeated headings: x, x-1, x-2
            seen[slug] += 1
            slug = f'{slug}-{seen[slug]}'
        else:
            seen[slug] = 0
        slugs.add(slug)
    return slugs


def links_of(path):
    """Every link target written in the prose of a Markdown file (code is skipped)."""
    prose, _ = split_prose_and_code(path.read_text(encoding='utf-8'))
    targets = []
    for line in prose:
        m = REFERENCE_DEF.match(line)
        if m:
            targets.append(m.group(1))
            continue
        without_code = INLINE_CODE.sub(lambda c: 'x' * len(c.group(0)), line)
        for m in INLINE_LINK.finditer(line):
            if without_code[m.start()] == 'x':  # the "link" is inside a code span
                continue
            targets.append(m.group(1))
    return targets


def check_link(source, target, root=REPO):
    """None when the link from ``source`` resolves, else why it does not."""
    if not target:
        return 'empty link target'
    parts = urlsplit(target)
    if parts.scheme in ('http', 'https'):
        if not parts.netloc or '.' not in parts.netloc.split(':')[0] or ' ' in target:
            return f'malformed URL {target!r}'
        return None
    if parts.scheme == 'mailto':
        return None if '@' in target else f'malformed mailto {target!r}'
    if parts.scheme or target.startswith('//'):
        return f'unexpected URL scheme in {target!r}'
    if parts.path:
        dest = (source.parent / parts.path).resolve()
        try:
            dest.relative_to(root.resolve())
        except ValueError:
            return f'{target!r} points outside the repository'
        if not dest.exists():
            return f'{target!r}: {dest.relative_to(root.resolve())} does not exist'
    else:
        dest = source
    if parts.fragment and dest.suffix == '.md':
        if parts.fragment not in heading_slugs(dest):
            return f'{target!r}: no heading with anchor #{parts.fragment} in {dest.name}'
    return None


def broken_links(files, root=REPO):
    problems = []
    for f in files:
        for target in links_of(f):
            why = check_link(f, target, root)
            if why:
                problems.append(f'{f.relative_to(root)}: {why}')
    return problems


def test_the_walker_sees_the_documents():
    files = doc_files()
    names = {f.relative_to(REPO).as_posix() for f in files}
    assert {'README.md', 'CHANGELOG.md', 'docs/index.md', 'docs/method.md'} <= names
    # The README links its pages: the walker must find links there, or it checks nothing.
    assert len(links_of(REPO / 'README.md')) >= 10


def test_every_relative_link_resolves():
    assert broken_links(doc_files()) == []


def test_the_walker_reports_broken_links(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'page.md').write_text('# A page\n\n## The `make demo` section\n')
    doc = tmp_path / 'README.md'
    doc.write_text('\n'.join([
        '# Title',
        '[fine](docs/page.md) [fine anchor](docs/page.md#the-make-demo-section)',
        '[own heading](#title) [web](https://example.org/x#y)',
        '[gone](docs/missing.md)',
        '[bad anchor](docs/page.md#no-such-heading)',
        '[bad url](https://nohost/x)',
        '[outside](../elsewhere.md)',
        '`[in code](docs/missing_in_code.md)` is not a link',
        '```',
        '[in a block](docs/missing_in_block.md)',
        '```',
        '[ref]: docs/missing_ref.md',
    ]) + '\n')
    problems = broken_links([doc], root=tmp_path)
    assert len(problems) == 5, problems
    for expected in ('docs/missing.md', '#no-such-heading', 'https://nohost/x',
                     'outside the repository', 'docs/missing_ref.md'):
        assert any(expected in p for p in problems), (expected, problems)


def test_github_slugs():
    assert github_slug('`make demo`: Feature Distillation on real images') == \
        'make-demo-feature-distillation-on-real-images'
    assert github_slug('`--full`: all four tracks, 5 seeds') == '--full-all-four-tracks-5-seeds'
    assert github_slug('From distillation to ImageNet, COCO and ADE20K') == \
        'from-distillation-to-imagenet-coco-and-ade20k'


def cited_paths(path):
    """configs/*.py and tools/*.py|.sh paths cited in code: inline spans and blocks."""
    prose, code = split_prose_and_code(path.read_text(encoding='utf-8'))
    chunks = list(code)
    for line in prose:
        chunks += [m.group(2) for m in INLINE_CODE.finditer(line)]
    return {m.group(1) for chunk in chunks for m in CITED_PATH.finditer(chunk)}


def test_cited_config_and_tool_paths_exist():
    files = [REPO / 'README.md'] + sorted((REPO / 'docs').glob('*.md'))
    cited = {(f.relative_to(REPO).as_posix(), p) for f in files for p in cited_paths(f)}
    assert len(cited) > 30  # the pages do cite configs and tools
    missing = sorted(f'{f}: {p}' for f, p in cited if not (REPO / p).exists())
    assert missing == []


def test_cited_paths_catch_a_stale_name(tmp_path):
    doc = tmp_path / 'page.md'
    doc.write_text('Run `tools/old_tool.py` or `<site>/mmdet/.mim/tools/train.py`:\n\n'
                   '```bash\ntools/dist_train.sh configs/fd/old_name.py 8\n```\n')
    assert cited_paths(doc) == {
        'tools/old_tool.py', 'tools/dist_train.sh', 'configs/fd/old_name.py'
    }


def test_sphinx_builds_without_warnings(tmp_path):
    # Sphinx and myst-parser come with make env (requirements/docs.txt): no skip.
    cmd = [
        sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html', '-d',
        str(tmp_path / 'doctrees'), 'docs',
        str(tmp_path / 'html')
    ]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / 'html' / 'index.html').is_file()
    assert '0.2.0' in (tmp_path / 'html' / 'changelog.html').read_text()
    print(f'sphinx build: {seconds:.1f} s')


def test_sphinx_fails_on_a_broken_link(tmp_path):
    """-W turns myst's missing-target warning into a failed build (what make docs uses)."""
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'conf.py').write_text(
        (REPO / 'docs' / 'conf.py').read_text().replace("osp.join(_root, 'mmfd', 'version.py')",
                                                        repr(str(REPO / 'mmfd' / 'version.py'))))
    (src / 'index.md').write_text('# Index\n\nSee [a page that is not there](missing.md).\n')
    cmd = [
        sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html',
        str(src),
        str(tmp_path / 'html')
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert 'missing.md' in result.stderr
