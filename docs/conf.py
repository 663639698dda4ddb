# Sphinx configuration of mmfd's documentation (`make docs`).
# The pages are Markdown read by myst-parser, the toolchain OpenMMLab's documentation
# uses. The build needs no network: no intersphinx, a theme that ships with Sphinx.
import os.path as osp
import re

_root = osp.dirname(osp.dirname(osp.abspath(__file__)))
with open(osp.join(_root, 'mmfd', 'version.py')) as f:
    _version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)

project = 'mmfd'
author = 'mmfd contributors'
copyright = '2026, mmfd contributors'
version = release = _version

extensions = ['myst_parser']
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']

# `[text](page.md#a-heading)` links resolve to GitHub-style heading slugs, the same
# anchors the pages have when read on GitHub (tests/test_docs.py checks both).
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']

html_theme = 'alabaster'
html_title = f'mmfd {release}'
html_static_path = []
