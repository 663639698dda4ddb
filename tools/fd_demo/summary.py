"""The demo's summary: numbers read from what the tools wrote, never recomputed.

* top-1: the last ``accuracy/top1`` record of the val loop in the training run's
  ``<work_dir>/<timestamp>/vis_data/scalars.json`` (mmengine's LocalVisBackend),
  i.e. the last epoch, no best-epoch selection;
* teacher / FD losses: the first and last ``loss`` records of those files;
* linear probes: ``probe.json`` of ``tools/fd_demo/probe.py``;
* attention distance / head diversity: ``attention.json`` of
  ``tools/analysis_tools/analyze_attention.py`` (per layer; the summary averages over layers);
* sharpness: ``landscape.json`` of ``tools/analysis_tools/loss_landscape.py``.

What the summary adds is statistics over the fine-tune seeds (mean, sample
standard deviation, the paired difference student - teacher with its standard
error and a t-test) and the verdicts in words.
"""
import json
import math
from pathlib import Path
from typing import Dict, List, Optional

LABELS = dict(
    sup_teacher='supervised teacher',
    sup_student='FD student of supervised',
    moco_teacher='MoCo v3 teacher',
    moco_student='FD student of MoCo v3',
    multi_student='FD student of both',
    scratch='FDViT from scratch',
    random_init='ViT at initialisation',
    pixels='raw pixels')
TRACK_TITLES = dict(
    supervised='supervised teacher -> FD student',
    contrastive='contrastive (MoCo v3) teacher -> FD student',
    multi='supervised + MoCo v3 teachers -> one FD student',
    control='FD students vs their architecture fine-tuned from scratch')
# A teacher counts as having learned when its linear probe is this many standard
# errors above chance and its k-NN top-1 beats the untrained network's by this
# many standard errors of the difference.
CHANCE_SE = 5.0
LEARNED_SE = 2.0


# --------------------------------------------------------------------------- reading
def latest_scalars(train_work_dir) -> Path:
    """``scalars.json`` of the newest run (timestamp folder) in a train work dir."""
    files = sorted(Path(train_work_dir).glob('*/vis_data/scalars.json'))
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {train_work_dir}')
    return files[-1]


def read_records(path) -> List[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def last_value(records: List[dict], key: str) -> Optional[dict]:
    """The last record holding ``key``: ``dict(value, step)`` or None."""
    for record in reversed(records):
        if key in record:
            return dict(value=float(record[key]), step=int(record.get('step', -1)))
    return None


def first_value(records: List[dict], key: str) -> Optional[dict]:
    return last_value(list(reversed(records)), key)


def accuracy_entry(train_work_dir) -> dict:
    path = latest_scalars(train_work_dir)
    top1 = last_value(read_records(path), 'accuracy/top1')
    if top1 is None:
        raise ValueError(f'{path} has no accuracy/top1 record (did the val loop run?)')
    return dict(top1=top1['value'], epoch=top1['step'], source=str(path))


def loss_entry(train_work_dir) -> dict:
    """First and last logged training losses (every ``loss*`` key) of a run."""
    path = latest_scalars(train_work_dir)
    records = read_records(path)
    keys = sorted({k for r in records for k in r if k.startswith('loss')})
    entry = dict(source=str(path))
    for key in keys:
        first, last = first_value(records, key), last_value(records, key)
        entry[key] = dict(first=first['value'], last=last['value'], iteration=last['step'])
    return entry


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def attention_numbers(report: dict) -> dict:
    """Layer-averaged numbers of one model of ``attention.json`` (plus per layer)."""
    distance = report['distance_mean']  # px, per layer (mean over heads)
    similarity = report['head_similarity']  # mean pairwise head cosine, per layer
    spread = report['distance_spread']  # spread of head distances, per layer
    return dict(
        attention_distance_mean=_mean(distance),
        attention_distance_last_layer=distance[-1],
        head_similarity_mean=_mean(similarity),
        head_similarity_last_layer=similarity[-1],
        distance_spread_mean=_mean(spread),
        per_layer=dict(
            attention_distance=distance, head_similarity=similarity, distance_spread=spread),
        num_images=report.get('num_images'),
        image_size=report.get('image_size'))


# --------------------------------------------------------------------------- statistics
def t_critical(dof: int) -> Optional[float]:
    """Two-sided 95 % critical value of Student's t with ``dof`` degrees of freedom."""
    if dof < 1:
        return None
    from scipy.stats import t
    return float(t.ppf(0.975, dof))


def seed_stats(values: List[float]) -> dict:
    """Mean and sample standard deviation over seeds."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean)**2 for v in values) / (n - 1)) if n > 1 else None
    return dict(mean=mean, std=std, n=n, values=list(values))


def paired(diffs: List[float]) -> dict:
    """Mean paired difference, its standard error and a paired t-test (``t`` is None
    when there is one seed or every seed gave the same difference)."""
    stats = seed_stats(diffs)
    n = stats['n']
    se = stats['std'] / math.sqrt(n) if stats['std'] is not None else None
    t = stats['mean'] / se if se else None
    crit = t_critical(n - 1)
    if t is not None:
        clear = abs(t) > crit
    else:  # identical differences on >= 2 seeds are as consistent as it gets
        clear = se == 0 and stats['mean'] != 0
    return dict(
        mean=stats['mean'], se=se, n=n, t=t, dof=n - 1, t_critical=crit, clear=clear, diffs=diffs)


def binomial_se(top1: float, n: int) -> float:
    """Standard error (points) of a top-1 (%) measured on n images."""
    p = top1 / 100.0
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / n)


# --------------------------------------------------------------------------- building
def build_summary(layout: dict, pairs: Dict[str, list], steps: Dict[str, dict], manifest: dict,
                  settings: dict) -> dict:
    """Collects every number of the demo from the files the tools wrote.

    ``layout``: ``dirs`` (train work dirs of the teachers ``*_teacher`` and FD runs
    ``*_student``; ``probe``, ``attention``, optional ``landscape`` folders),
    ``finetunes`` (model -> seed -> fine-tune work dir), ``seeds``, ``models``.
    ``pairs``: track -> [(student, teacher)] compared after fine-tuning.
    """
    dirs, models, seeds = layout['dirs'], layout['models'], layout['seeds']
    n_val = int(manifest['num_val'])
    summary = dict(
        settings=settings,
        data=dict(
            source=manifest['source'],
            num_train=manifest['num_train'],
            num_val=n_val,
            image_size=manifest['image_size'],
            classes=len(manifest['classes'])),
        labels={k: LABELS[k]
                for k in list(models) + ['random_init', 'pixels']})

    summary['teachers'] = {}
    if 'sup_teacher' in models:
        summary['teachers']['sup_teacher'] = dict(
            accuracy_entry(dirs['sup_teacher']), **loss_entry(dirs['sup_teacher']))
    if 'moco_teacher' in models:
        summary['teachers']['moco_teacher'] = loss_entry(dirs['moco_teacher'])
    summary['fd'] = {k: loss_entry(dirs[k]) for k in models if k.endswith('_student')}

    finetune = {}
    for key in models:
        runs = {str(s): accuracy_entry(layout['finetunes'][key][s]) for s in seeds}
        finetune[key] = dict(seed_stats([runs[str(s)]['top1'] for s in seeds]), runs=runs)
    summary['finetune'] = finetune

    probe_json = Path(dirs['probe']) / 'probe.json'
    probe = json.loads(probe_json.read_text())
    summary['probe'] = dict({
        k: dict(v)
        for k, v in probe['models'].items()
    },
                            pixels=probe.get('pixels'),
                            chance=probe['chance'],
                            num_val=probe['num_val'],
                            source=str(probe_json))
    summary['teacher_learned'] = {
        k: teacher_learned(summary['probe'], k)
        for k in models if k.endswith('_teacher')
    }

    attention_dir = Path(dirs['attention'])
    attention = json.loads((attention_dir / 'attention.json').read_text())['models']
    summary['attention'] = dict(
        {k: attention_numbers(attention[k])
         for k in models if k in attention},
        source=str(attention_dir / 'attention.json'))
    plots = dict(
        attention_distance=attention_dir / 'attention_distance.png',
        head_diversity=attention_dir / 'head_diversity.png')
    for key in [k for k in models if k in attention]:
        index = attention[key]['index']
        plots[f'attention_maps_{key}'] = attention_dir / f'attention_maps_{index}.png'

    landscape_dir = dirs.get('landscape')
    if landscape_dir is not None and (Path(landscape_dir) / 'landscape.json').is_file():
        landscape = json.loads((Path(landscape_dir) / 'landscape.json').read_text())
        summary['landscape'] = {}
        for key in models:
            runs = {str(s): landscape['models'][f'{key}/s{s}']['sharpness'] for s in seeds}
            summary['landscape'][key] = dict(
                seed_stats([runs[str(s)]['curvature'] for s in seeds]), runs=runs)
        summary['landscape']['source'] = str(Path(landscape_dir) / 'landscape.json')
        plots['loss_landscape'] = Path(landscape_dir) / f'landscape_{landscape["dim"]}d.png'

    summary['comparisons'] = {}
    for track, track_pairs in pairs.items():
        summary['comparisons'][track] = [
            compare(summary, student, teacher, seeds) for student, teacher in track_pairs
        ]
    summary['verdicts'] = {track: verdict(summary, track) for track in pairs}
    summary['plots'] = {k: str(v) for k, v in plots.items()}
    summary['steps'] = steps
    return summary


def teacher_learned(probe: dict, key: str) -> dict:
    """Did a teacher learn? Its linear probe must be well above chance (what anyone
    would ask) and its k-NN vote must beat the same ViT at initialisation (on
    digits even random features are linearly separable, the neighbour vote is
    where training shows)."""
    n, chance = probe['num_val'], probe['chance']
    linear, knn = probe[key]['top1'], probe[key]['knn_top1']
    base = probe['random_init']['knn_top1']
    se = math.hypot(binomial_se(knn, n), binomial_se(base, n))
    above_chance = linear > chance + CHANCE_SE * binomial_se(linear, n)
    return dict(
        probe_top1=linear,
        knn_top1=knn,
        random_init_probe_top1=probe['random_init']['top1'],
        random_init_knn_top1=base,
        chance=chance,
        above_chance=bool(above_chance),
        knn_margin=knn - base,
        knn_margin_se=se,
        learned=bool(above_chance and knn - base > LEARNED_SE * se))


def compare(summary: dict, student: str, teacher: str, seeds) -> dict:
    ft = summary['finetune']
    out = dict(
        student=student,
        teacher=teacher,
        finetune=paired([
            ft[student]['runs'][str(s)]['top1'] - ft[teacher]['runs'][str(s)]['top1'] for s in seeds
        ]))
    att = summary['attention']
    if student in att and teacher in att:  # networks measured before fine-tuning
        out['head_similarity'] = dict(
            student=att[student]['head_similarity_mean'],
            teacher=att[teacher]['head_similarity_mean'],
            difference=att[student]['head_similarity_mean'] - att[teacher]['head_similarity_mean'])
    if 'landscape' in summary:
        land = summary['landscape']
        out['curvature'] = paired([
            land[student]['runs'][str(s)]['curvature'] - land[teacher]['runs'][str(s)]['curvature']
            for s in seeds
        ])
    learned = summary['teacher_learned'].get(teacher)
    out['reported'] = learned is None or learned['learned']
    return out


# --------------------------------------------------------------------------- words
def _pm(stats, digits=2) -> str:
    if stats['std'] is None:
        return f'{stats["mean"]:.{digits}f}'
    return f'{stats["mean"]:.{digits}f} ± {stats["std"]:.{digits}f}'


def _paired_words(p: dict, unit: str, sign: int = 1, digits: int = 2):
    """(short verdict, sentence) on a paired difference student - teacher: its
    direction and whether the seeds settle it (two-sided paired t-test at 95 %).
    ``sign=-1``: a negative difference is the student's advantage."""
    ahead = sign * p['mean']
    unit = f' {unit}' if unit else ''
    if p['se'] is None:
        size = f'{p["mean"]:+.{digits}f}{unit}, one seed: no error bar'
    elif p['t'] is None:
        size = f'{p["mean"]:+.{digits}f}{unit} on each of {p["n"]} seeds'
    else:
        size = (f'{p["mean"]:+.{digits}f} ± {p["se"]:.{digits}f}{unit}, t = {p["t"]:+.2f} over '
                f'{p["n"]} seeds; 95 % needs |t| > {p["t_critical"]:.2f}')
    if p['clear']:
        short = 'reproduced' if ahead > 0 else 'reversed'
        return short, f'{short.upper()}, clearly ({size})'
    lean = 'towards the paper' if ahead > 0 else 'against the paper' if ahead < 0 else 'nowhere'
    return (f'unclear (leans {lean})',
            f'not distinguishable from seed noise ({size}); it leans {lean}')


def verdict(summary: dict, track: str) -> dict:
    """Per track, in words: is the paper's direction reproduced, how confidently."""
    lines, status = [], {}
    comps = summary['comparisons'][track]
    for comp in comps:
        s, t = comp['student'], comp['teacher']
        # One pair per track but multi's: name the teacher only where it is needed.
        who = f' (vs the {LABELS[t]})' if len(comps) > 1 else ''
        if not comp['reported']:
            learned = summary['teacher_learned'][t]
            lines.append(f'the {LABELS[t]} did NOT learn measurably (linear probe '
                         f'{learned["probe_top1"]:.2f} %, chance {learned["chance"]:.0f} %; k-NN '
                         f'{learned["knn_top1"]:.2f} % vs {learned["random_init_knn_top1"]:.2f} % '
                         'for the same ViT at initialisation): no FD comparison is reported.')
            status[t] = dict(finetune='not reported: the teacher did not learn')
            continue
        ft = summary['finetune']
        short, words = _paired_words(comp['finetune'], 'points')
        if t == 'scratch':  # the control: did FD add anything to the architecture?
            lines.append(f'the {LABELS[s]} fine-tunes better than the same architecture from '
                         f'scratch: {words}; {_pm(ft[s])} vs {_pm(ft[t])} %.')
            status[s] = dict(finetune=short)
            continue
        lines.append(f'student fine-tunes better{who}: {words}; '
                     f'{_pm(ft[s])} vs {_pm(ft[t])} %.')
        entry = dict(finetune=short)
        hs = comp['head_similarity']
        entry['heads'] = 'reproduced' if hs['difference'] < 0 else 'not reproduced'
        lines.append(f'more diverse heads{who}: {entry["heads"].upper()} (mean head '
                     f'similarity {hs["student"]:.3f} vs {hs["teacher"]:.3f}, lower = more '
                     'diverse; one FD run, no error bar).')
        if 'curvature' in comp:
            # Lower curvature = flatter: the paper's direction is a negative difference.
            short, words = _paired_words(comp['curvature'], '', sign=-1, digits=3)
            land = summary['landscape']
            lines.append(f'flatter fine-tuned minimum{who}: {words}; curvature '
                         f'{_pm(land[s], 3)} vs {_pm(land[t], 3)}.')
            entry['landscape'] = short
        status[t] = entry
    names = dict(finetune='fine-tuning', heads='heads', landscape='landscape')
    brief = '; '.join(
        (f'{LABELS[key]}: ' if len(status) > 1 else '') + ', '.join(f'{names[k]} {v}'
                                                                    for k, v in entry.items())
        for key, entry in status.items())
    return dict(title=TRACK_TITLES[track], lines=lines, status=status, brief=brief)


def notes(summary: dict) -> List[str]:
    out = []
    teachers = summary['teachers']
    if 'sup_teacher' in teachers:
        out.append('Supervised teacher (CLS head, trained on the labels): '
                   f'{teachers["sup_teacher"]["top1"]:.2f} % top-1 on val.')
    if 'moco_teacher' in teachers:
        loss = teachers['moco_teacher']['loss']
        learned = summary['teacher_learned']['moco_teacher']
        out.append(f'MoCo v3 teacher (no labels): contrastive loss {loss["first"]:.3f} -> '
                   f'{loss["last"]:.3f}; linear probe {learned["probe_top1"]:.2f} % (chance '
                   f'{learned["chance"]:.0f} %); k-NN {learned["knn_top1"]:.2f} % vs '
                   f'{learned["random_init_knn_top1"]:.2f} % for the same ViT at initialisation '
                   f'({learned["knn_margin"]:+.2f} ± {learned["knn_margin_se"]:.2f} points): ' +
                   ('it learned.' if learned['learned'] else 'it did NOT learn measurably.'))
    pixels, init = summary['probe'].get('pixels'), summary['probe']['random_init']
    if pixels:
        out.append(f'For scale: a linear probe reaches {pixels["top1"]:.2f} % on the raw pixels '
                   f'and {init["top1"]:.2f} % on the untrained ViT (digits are nearly linearly '
                   'separable as they are); the k-NN column shows what training added.')
    for key, fd in summary['fd'].items():
        parts = [
            f'{k} {v["last"]:.4f}' for k, v in fd.items() if isinstance(v, dict) and 'last' in v
        ]
        out.append(f'Final FD losses of the {LABELS[key]} (whitened Smooth-L1, train): ' +
                   ', '.join(parts) + '.')
    for track, v in summary['verdicts'].items():
        out.append('')
        out.append(f'[{track}] {v["title"]}: {v["brief"]}')
        out.extend(f'  - {line}' for line in v['lines'])
    out.append('')
    out.append(
        f'Confidence: the {len(summary["settings"]["seeds"])} seeds vary the fine-tunes only '
        '(head init, drop path, data order, crops; teacher and student share each seed). '
        'Each teacher and FD run was trained once, so the error bars do not include '
        'their run-to-run variation, and head diversity has no error bar at all. '
        f'Val has {summary["data"]["num_val"]} images: one image is '
        f'{100.0 / summary["data"]["num_val"]:.2f} points.')
    out.append('Nothing was tuned to make FD win: teachers and students share one fine-tune '
               'recipe (ft_digits_recipe.py, the demo\'s own, only shortened for the time '
               'budget before any student of this size was fine-tuned); FD\'s settings are '
               'the FD recipe\'s scaled down and were chosen by the distillation loss alone; '
               'the MoCo v3 teacher\'s by its own k-NN and probe; every number of epochs by '
               'the measured cost of its step.')
    return out


def _fmt(value, digits=2):
    return '-' if value is None else f'{value:.{digits}f}'


def table_rows(summary: dict) -> List[List[str]]:
    models = [k for k in summary['finetune']]
    has_land = 'landscape' in summary
    header = [
        'model', 'fine-tuned top-1 (%)', 'linear probe (%)', 'k-NN (%)', 'attn. distance (px)',
        'head similarity'
    ]
    if has_land:
        header.append('curvature (lower = flatter)')
    rows = [header]
    n = len(summary['settings']['seeds'])
    for key in models:
        ft = summary['finetune'][key]
        att = summary['attention'].get(key, {})
        probe = summary['probe'].get(key, {})
        row = [
            LABELS[key], f'{_pm(ft)} (n={n})',
            _fmt(probe.get('top1')),
            _fmt(probe.get('knn_top1')),
            _fmt(att.get('attention_distance_mean')),
            _fmt(att.get('head_similarity_mean'), 3)
        ]
        if has_land:
            row.append(_pm(summary['landscape'][key], 3))
        rows.append(row)
    baselines = [('random_init', summary['probe']['random_init']),
                 ('pixels', summary['probe'].get('pixels'))]
    for key, entry in baselines:
        if entry:
            rows.append([LABELS[key], '-',
                         _fmt(entry['top1']),
                         _fmt(entry['knn_top1']), '-', '-'] + (['-'] if has_land else []))
    return rows


def difference_rows(summary: dict) -> List[List[str]]:
    rows = [['paired difference (student - teacher)', 'fine-tuned top-1 (points)', 'curvature']]
    for track, comps in summary['comparisons'].items():
        for comp in comps:
            label = f'{LABELS[comp["student"]]} - {LABELS[comp["teacher"]]}'
            if not comp['reported']:
                rows.append([label, 'not reported: teacher did not learn', '-'])
                continue
            cells = []
            for key in ('finetune', 'curvature'):
                p = comp.get(key)
                if p is None:
                    cells.append('-')
                elif p['t'] is None:
                    cells.append(f'{p["mean"]:+.2f}')
                else:
                    cells.append(f'{p["mean"]:+.2f} ± {p["se"]:.2f} (t = {p["t"]:+.1f})')
            rows.append([label] + cells)
    return rows


def _text_table(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append('  '.join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))))
        if index == 0:
            lines.append('  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def format_table(summary: dict) -> str:
    return (_text_table(table_rows(summary)) + '\n\n' + _text_table(difference_rows(summary)) +
            '\n(mean ± std over seeds; differences: mean ± standard error, paired by seed)')


def _md_table(rows: List[List[str]]) -> List[str]:
    lines = ['| ' + ' | '.join(rows[0]) + ' |', '| --- |' + ' ---: |' * (len(rows[0]) - 1)]
    lines.extend('| ' + ' | '.join(row) + ' |' for row in rows[1:])
    return lines


def to_markdown(summary: dict) -> str:
    data = summary['data']
    settings = summary['settings']
    lines = [
        '# mmfd demo: Feature Distillation on handwritten digits', '',
        f'{data["num_train"]} train / {data["num_val"]} val images '
        f'({data["classes"]} classes, {data["image_size"]} px) from {data["source"]}. '
        f'Tracks: {", ".join(settings["tracks"])}; fine-tune seeds {settings["seeds"]}.', ''
    ]
    lines += _md_table(table_rows(summary))
    lines.append('')
    lines += _md_table(difference_rows(summary))
    lines += [
        '', 'Mean ± standard deviation over seeds; differences: mean ± standard error, '
        'paired by seed, with the paired t statistic.', ''
    ]
    for note in notes(summary):
        lines.append(note if (not note or note.startswith(('[', '  -'))) else f'- {note}')
    lines += ['', '## Plots', '']
    lines.extend(f'- {name}: `{path}`' for name, path in summary['plots'].items())
    lines += [
        '', '## Steps', '', '| step | seconds | status | command |', '| --- | ---: | --- | --- |'
    ]
    for name, step in summary['steps'].items():
        status = 'skipped (done before)' if step.get('skipped') else 'ran'
        command = f'`{step["command"]}`' if step.get('command') else '(in process)'
        lines.append(f'| {name} | {step.get("seconds", 0):.1f} | {status} | {command} |')
    lines += [
        '', 'Numbers are read from the files the tools wrote '
        '(sources in summary.json).', ''
    ]
    return '\n'.join(lines)


def write_summary(summary: dict, work_dir) -> Dict[str, Path]:
    work_dir = Path(work_dir)
    md, js = work_dir / 'summary.md', work_dir / 'summary.json'
    md.write_text(to_markdown(summary))
    js.write_text(json.dumps(summary, indent=1))
    return dict(markdown=md, json=js)
