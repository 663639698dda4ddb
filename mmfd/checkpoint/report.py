"""The one way mmfd tells a user that a checkpoint does not fit a model.

Teachers, ``StrictPretrained`` and the diagnostic tools all load through
:func:`mmfd.checkpoint.strict_load.check_and_load`, which fills a
:class:`LoadReport`; :func:`format_load_error` turns it into the message. Keeping one
format means a user learns it once: the file first, then one line per kind of
problem with its count and the first keys, then what the keys look like on either
side (the usual culprit is a prefix or the wrong arch).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

MAX_LISTED = 12


def format_keys(keys: Sequence[str]) -> str:
    """``'a, b, c'``, cut after MAX_LISTED with how many more there are."""
    keys = list(keys)
    shown = ', '.join(keys[:MAX_LISTED])
    if len(keys) > MAX_LISTED:
        shown += f', ... and {len(keys) - MAX_LISTED} more'
    return shown


def key_line(label: str, keys: Sequence[str]) -> str:
    """``'missing keys (2): a, b'``: the line every report (and log) uses."""
    return f'{label} ({len(keys)}): {format_keys(keys)}'


def shape_text(key: str, file_shape: Tuple[int, ...], model_shape: Tuple[int, ...]) -> str:
    return f'{key}: checkpoint {tuple(file_shape)} vs model {tuple(model_shape)}'


@dataclass
class LoadReport:
    """What loading ``source`` into a module of class ``target`` found.

    ``missing`` / ``unexpected`` hold every such key; ``bad_missing`` /
    ``bad_unexpected`` the ones the caller did not declare (those fail the load).
    ``rebuilt`` are derived buffers the model recomputes from its own geometry;
    ``dropped`` the file keys removed on purpose before loading.
    """
    source: str
    target: str
    file_keys: List[str] = field(default_factory=list)
    model_keys: List[str] = field(default_factory=list)
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    bad_missing: List[str] = field(default_factory=list)
    bad_unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)  # shape_text() lines
    rebuilt: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    loaded_params: int = 0
    total_params: int = 0

    @property
    def fraction(self) -> float:
        """Share of the module's parameter elements that came from the file."""
        return self.loaded_params / self.total_params if self.total_params else 1.0

    def key_problems(self) -> List[str]:
        problems = []
        if self.bad_missing:
            problems.append(key_line('missing keys', self.bad_missing))
        if self.bad_unexpected:
            problems.append(key_line('unexpected keys', self.bad_unexpected))
        if self.mismatched:
            problems.append(key_line('shape mismatch', self.mismatched))
        return problems


def common_prefix_hint(keys: Sequence[str], option: str) -> Optional[str]:
    """``"every file key starts with 'backbone.': set prefix='backbone.'"`` when the
    file's keys all share one first component (the file nests the module)."""
    prefixes = {k.split('.', 1)[0] + '.' for k in keys if '.' in k}
    if len(prefixes) != 1 or not all('.' in k for k in keys):
        return None
    prefix = prefixes.pop()
    return f'every file key starts with {prefix!r}: set {option}={prefix!r}'


def format_load_error(report: LoadReport,
                      problems: Sequence[str] = (),
                      consequence: Optional[str] = None,
                      hint: Optional[str] = None) -> str:
    """The message of a failed load: ``problems`` (e.g. "no parameter of the model
    was found") come first, then the key lines of ``report``, then the key samples
    of both sides and the caller's ``hint`` (what option to check)."""
    head = (f'{report.source} does not fit {report.target} (wrong file, arch or options?)' +
            (f'; {consequence}' if consequence else '') + ':')
    lines = list(problems) + report.key_problems()
    lines.append(f'file keys look like: {format_keys(sorted(report.file_keys)[:5])}')
    lines.append(f'model keys look like: {format_keys(report.model_keys[:5])}')
    if hint:
        lines.append(hint)
    return head + '\n  ' + '\n  '.join(lines)
