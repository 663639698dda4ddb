"""The demo's summary: numbers read from what the tools wrote, never recomputed.

* top-1: the last ``accuracy/top1`` record of the val loop in the training run's
  ``<work_dir>/<timestamp>/vis_data/scalars.json`` (mmengine's LocalVisBackend),
  i.e. the last epoch, no best-epoch selection;
* FD loss: the last ``loss`` record of the FD run's ``scalars.json``;
* attention distance / head diversity: ``attention.json`` of
  ``tools/analyze_attention.py`` (per layer; the summary averages over layers);
* sharpness: ``landscape.json`` of ``tools/loss_landscape.py``.
"""
import json
import math
from pathlib import Path
from typing import Dict, List, Optional

TEACHER, STUDENT = 'teacher', 'FD student'


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


def accuracy_entry(train_work_dir) -> dict:
    path = latest_scalars(train_work_dir)
    top1 = last_value(read_records(path), 'accuracy/top1')
    if top1 is None:
        raise ValueError(f'{path} has no accuracy/top1 record (did the val loop run?)')
    return dict(top1=top1['value'], epoch=top1['step'], source=str(path))


def standard_error(top1: float, n: int) -> float:
    """Binomial standard error (percentage points) of a top-1 measured on n images."""
    p = top1 / 100.0
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / n) if n else float('nan')


# --------------------------------------------------------------------------- building
def build_summary(paths: Dict[str, Path], steps: Dict[str, dict], manifest: dict,
                  settings: dict) -> dict:
    """Collects every number of the demo from the files the tools wrote.

    ``paths``: ``teacher``, ``fd``, ``ft_teacher``, ``ft_student`` (train work dirs),
    ``attention`` (folder of analyze_attention), optionally ``landscape``.
    """
    n_val = int(manifest['num_val'])
    summary = dict(
        settings=settings,
        data=dict(
            source=manifest['source'],
            num_train=manifest['num_train'],
            num_val=n_val,
            image_size=manifest['image_size'],
            classes=len(manifest['classes'])))

    teacher = accuracy_entry(paths['teacher'])
    fd_scalars = latest_scalars(paths['fd'])
    fd_loss = last_value(read_records(fd_scalars), 'loss')
    ft = {
        TEACHER: accuracy_entry(paths['ft_teacher']),
        STUDENT: accuracy_entry(paths['ft_student'])
    }
    for entry in ft.values():
        entry['standard_error'] = standard_error(entry['top1'], n_val)
    summary['teacher_supervised'] = teacher
    summary['fd'] = dict(
        final_loss=fd_loss['value'] if fd_loss else None,
        iteration=fd_loss['step'] if fd_loss else None,
        source=str(fd_scalars))
    diff = ft[STUDENT]['top1'] - ft[TEACHER]['top1']
    summary['finetune'] = dict(
        ft,
        difference=dict(
            student_minus_teacher=diff,
            standard_error=math.hypot(ft[STUDENT]['standard_error'], ft[TEACHER]['standard_error']),
            images=round(diff * n_val / 100.0)))

    attention_dir = Path(paths['attention'])
    attention_json = json.loads((attention_dir / 'attention.json').read_text())
    models = attention_json['models']
    summary['attention'] = dict(
        {label: attention_numbers(models[label])
         for label in (TEACHER, STUDENT)},
        source=str(attention_dir / 'attention.json'))
    plots = dict(
        attention_distance=attention_dir / 'attention_distance.png',
        head_diversity=attention_dir / 'head_diversity.png',
        attention_maps_teacher=attention_dir /
        'attention_maps_{}.png'.format(models[TEACHER]['index']),
        attention_maps_student=attention_dir /
        'attention_maps_{}.png'.format(models[STUDENT]['index']))

    landscape_dir = paths.get('landscape')
    if landscape_dir is not None and (Path(landscape_dir) / 'landscape.json').is_file():
        landscape = json.loads((Path(landscape_dir) / 'landscape.json').read_text())
        summary['landscape'] = dict(
            {label: dict(landscape['models'][label]['sharpness'])
             for label in (TEACHER, STUDENT)},
            source=str(Path(landscape_dir) / 'landscape.json'))
        plots['loss_landscape'] = Path(landscape_dir) / f'landscape_{landscape["dim"]}d.png'

    summary['plots'] = {k: str(v) for k, v in plots.items()}
    summary['steps'] = steps
    return summary


# --------------------------------------------------------------------------- writing
def _fmt(value, digits=2, suffix=''):
    return '-' if value is None else f'{value:.{digits}f}{suffix}'


def table_rows(summary: dict) -> List[List[str]]:
    ft, att = summary['finetune'], summary['attention']
    rows = [['', 'teacher (supervised ViT)', 'FD student (FDViT)']]
    rows.append(
        ['fine-tuned top-1 on val (%)'] +
        [f'{ft[k]["top1"]:.2f} ± {ft[k]["standard_error"]:.2f}' for k in (TEACHER, STUDENT)])
    rows.append(['mean attention distance (px)'] +
                [_fmt(att[k]['attention_distance_mean']) for k in (TEACHER, STUDENT)])
    rows.append(['  last layer (px)'] +
                [_fmt(att[k]['attention_distance_last_layer']) for k in (TEACHER, STUDENT)])
    rows.append(['head similarity (cos, lower = more diverse)'] +
                [_fmt(att[k]['head_similarity_mean'], 3) for k in (TEACHER, STUDENT)])
    rows.append(['  last layer'] +
                [_fmt(att[k]['head_similarity_last_layer'], 3) for k in (TEACHER, STUDENT)])
    rows.append(['spread of head distances (px)'] +
                [_fmt(att[k]['distance_spread_mean']) for k in (TEACHER, STUDENT)])
    if 'landscape' in summary:
        rows.append(['loss-landscape curvature (lower = flatter)'] +
                    [_fmt(summary['landscape'][k]['curvature'], 3) for k in (TEACHER, STUDENT)])
    return rows


def format_table(summary: dict) -> str:
    rows = table_rows(summary)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        lines.append('  '.join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))))
        if index == 0:
            lines.append('  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def notes(summary: dict) -> List[str]:
    ft = summary['finetune']
    diff = ft['difference']
    teacher = summary['teacher_supervised']
    out = [
        f'Teacher after step 1 (supervised, CLS head): {teacher["top1"]:.2f} % top-1 on val.',
        f'FD student - teacher after the same fine-tune: {diff["student_minus_teacher"]:+.2f} '
        f'points ({diff["images"]:+d} of {summary["data"]["num_val"]} val images; '
        f'one standard error of the difference ≈ {diff["standard_error"]:.2f} points).',
    ]
    if summary['fd']['final_loss'] is not None:
        out.append('Final FD loss (whitened Smooth-L1, train): '
                   f'{summary["fd"]["final_loss"]:.4f}.')
    return out


def to_markdown(summary: dict) -> str:
    rows = table_rows(summary)
    data = summary['data']
    lines = [
        '# mmfd demo: Feature Distillation on handwritten digits', '',
        f'{data["num_train"]} train / {data["num_val"]} val images '
        f'({data["classes"]} classes, {data["image_size"]} px) from {data["source"]}.', ''
    ]
    lines.append('| ' + ' | '.join(rows[0]) + ' |')
    lines.append('| --- | ---: | ---: |')
    lines.extend('| ' + ' | '.join(row) + ' |' for row in rows[1:])
    lines.append('')
    lines.extend(f'- {n}' for n in notes(summary))
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
