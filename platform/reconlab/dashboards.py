"""The report researchers look at: one self-contained HTML page rebuilt from
the MLflow runs that exist (``python dashboards/build_report.py``).

A section per study. Studies are found from what the runs record: every
sweep run carries its study's name, title, the research it reproduces and
the command that reproduces it (``reconlab.study*`` tags), so a sweep logged
under any experiment name is reported, and a study this installation has
never heard of (a user's) gets a section from its logged tables and
figures. The installed studies (``reconlab.studies`` entry points) come
first, in their order, each saying its command when the store holds no run
of it. For each sweep found (the latest parent run of each sweep name in
each experiment):

- the job's own tables and notes, exactly as the job logged them on the
  sweep's parent run (``<table>.md``: the papers' numbers sit in them beside
  ours, and the verdicts under them), so the report never derives a number
  differently from the job; its figures, embedded;
- trial status counts, wall time, and a best-so-far curve over the trial
  runs in the order they started;
- the best trials, each value linked to its MLflow run;
- per Optuna study of the sweep (``optuna.db`` in its Tune directory, when
  that lies on this machine): Optuna's parameter importances.

Links point at the MLflow UI (``--ui``, default ``make ui``'s address).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import json
import math
import os
import re
import tempfile

from reconlab import tracking

UI = "http://127.0.0.1:5000"
TOP_TRIALS = 8
MAX_GALLERY = 12


@dataclasses.dataclass(frozen=True)
class Section:
    """One study's section: what the sweep runs (or the installed study) say of it."""

    key: str
    title: str
    research: str
    command: str


def section_of(parent, experiment: str, known: dict) -> Section:
    """The study a sweep run belongs to, from its tags. A sweep logged before
    runs recorded their study has none: one in an experiment named as the
    jobs named theirs then (``reconlab-<study>[-smoke]``) belongs to that
    installed study; any other gets a section of its experiment."""
    from reconlab.sweep import study as st

    tags = parent.data.tags
    key = tags.get(st.TAG_STUDY)
    if key is None:
        legacy = experiment.removesuffix("-smoke").removeprefix("reconlab-").replace("-", "_")
        key = legacy if experiment.startswith("reconlab-") and legacy in known else f"experiment-{experiment}"
    if key in known and st.TAG_TITLE not in tags:
        return known[key]
    return Section(key, tags.get(st.TAG_TITLE, f"Sweeps in experiment {experiment}"), tags.get(st.TAG_RESEARCH, ""),
                   tags.get(st.TAG_COMMAND, ""))


def installed_sections() -> dict[str, Section]:
    """The installed studies' sections, in entry-point order."""
    from reconlab.sweep.study import installed

    return {k: Section(k, s.title, s.research, s.command) for k, s in installed(strict=False).items()}


def holds_sweep(c, exp_id: str) -> bool:
    return bool(c.search_runs([exp_id], f"tags.`{tracking.TAG_SWEEP}` != ''", max_results=1))


# --------------------------------------------------------------------------- reading MLflow


@dataclasses.dataclass
class Sweep:
    experiment: str
    exp_id: str
    parent: object  # mlflow Run
    trials: list
    tables: list[tuple[str, str]]  # (name, markdown)
    figures: list[tuple[str, bytes]]  # (name, png)
    gallery: list[tuple[str, bytes]]
    importances: list[tuple[str, dict[str, float] | str]]


def _artifacts(c, run_id: str, path: str | None = None) -> list:
    try:
        return list(c.list_artifacts(run_id, path))
    except Exception:
        return []


def _read(c, run_id: str, path: str, tmp: str) -> bytes:
    local = c.download_artifacts(run_id, path, tmp)
    with open(local, "rb") as f:
        return f.read()


def load_sweeps(c, experiment) -> list[Sweep]:
    """The latest parent run of each sweep name in ``experiment``, with its
    trial runs, tables, figures and Optuna importances."""
    parents = tracking.find_runs(c, experiment.experiment_id, {}, max_results=10000)
    latest: dict[str, object] = {}
    for r in parents:
        name = r.data.tags.get(tracking.TAG_SWEEP)
        if name and (name not in latest or r.info.start_time > latest[name].info.start_time):
            latest[name] = r
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, p in sorted(latest.items()):
            trials = [r for r in parents if r.data.tags.get(tracking.TAG_PARENT) == p.info.run_id]
            tables, figures, gallery = [], [], []
            listed = _artifacts(c, p.info.run_id)
            for a in listed:
                if a.is_dir:
                    for b in _artifacts(c, p.info.run_id, a.path):
                        if b.path.endswith(".png") and len(gallery) < MAX_GALLERY:
                            gallery.append((b.path, _read(c, p.info.run_id, b.path, tmp)))
                elif a.path.endswith(".md"):
                    tables.append((a.path, _read(c, p.info.run_id, a.path, tmp).decode()))
                elif a.path.endswith(".png"):
                    figures.append((a.path, _read(c, p.info.run_id, a.path, tmp)))
            labels = {}
            if any(a.path == "search_space.json" for a in listed):
                labels = strata_labels(json.loads(_read(c, p.info.run_id, "search_space.json", tmp)))
            out.append(Sweep(experiment.name, experiment.experiment_id, p, trials, tables, figures, gallery,
                             importances(p, labels)))
    return out


def strata_labels(spec: dict) -> dict[str, str]:
    """Optuna study name -> what it searched: ``stratum-i`` is the i-th value
    (or combination) of the sweep's ``stratify`` choices, as
    ``reconlab.sweep.searcher`` names them."""
    import itertools

    keys = spec.get("stratify")
    if not keys:
        return {"sweep": "the whole sweep"}
    keys = [keys] if isinstance(keys, str) else keys
    values = [spec["search"][k]["values"] for k in keys]
    combos = list(itertools.product(*values))
    return {f"stratum-{i}": ", ".join(f"{k} {v}" for k, v in zip(keys, c)) for i, c in enumerate(combos)}


def importances(parent, labels: dict[str, str] | None = None) -> list[tuple[str, dict[str, float] | str]]:
    """Optuna's parameter importances of each study of the sweep (one per
    stratum), from the ``optuna.db`` in its Tune directory; a line saying why
    where there are none."""
    tune_dir = parent.data.tags.get("reconlab.tune_dir")
    path = os.path.join(tune_dir, "optuna.db") if tune_dir else None
    if not path or not os.path.isfile(path):
        return [("", "no Optuna study on this machine (the sweep's Tune directory is elsewhere)")]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path}"
    out = []
    for s in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        label = f"{(labels or {}).get(s.study_name, s.study_name)} ({len(done)} trials)"
        varied = {k for t in done for k in t.params if len({repr(u.params.get(k)) for u in done}) > 1}
        if len(done) < 3 or not varied:
            out.append((label, "too few trials, or no parameter varied"))
            continue
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=sorted(varied))
        except Exception as e:  # e.g. a study whose values are all equal
            out.append((label, f"not computable: {type(e).__name__}"))
            continue
        out.append((label, dict(imp)))
    return out


# --------------------------------------------------------------------------- figures


def best_so_far_png(values: list[float], mode: str, metric: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best, cur = [], None
    for v in values:
        cur = v if cur is None or (v > cur if mode == "max" else v < cur) else cur
        best.append(cur)
    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=100)
    ax.plot(range(1, len(values) + 1), values, "o", ms=3, alpha=0.5, label="trial")
    ax.step(range(1, len(best) + 1), best, where="post", label="best so far")
    ax.set_xlabel("trial (in start order)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return tracking.figure_png(fig)


# --------------------------------------------------------------------------- HTML


def run_url(ui: str, exp_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI, in its "Model training" view (the
    UI opens on its GenAI view otherwise)."""
    return f"{ui}/#/experiments/{exp_id}/runs/{run_id}?workflowType=machine_learning"


def _img(data: bytes, alt: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode()}"><figcaption>{html.escape(alt)}</figcaption></figure>')


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def markdown_html(md: str) -> str:
    """The jobs' tables: pipe tables, bullet notes and paragraphs."""
    out, rows, items = [], [], []

    def flush():
        if rows:
            head, body = rows[0], rows[2:]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(v)}</td>" for v in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            rows.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in md.splitlines():
        s = line.strip()
        if s.startswith("|"):
            if items:
                flush()
            rows.append([c.strip() for c in s.strip("|").split("|")])
        elif s.startswith("- "):
            if rows:
                flush()
            items.append(s[2:])
        else:
            flush()
            if s:
                out.append(f"<p>{_inline(s)}</p>")
    flush()
    return "\n".join(out)


def _when(ms: int | None) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ms else "–"


def _fmt(v) -> str:
    if isinstance(v, str):  # MLflow params are strings
        try:
            v = int(v) if re.fullmatch(r"-?\d+", v) else float(v)
        except ValueError:
            return html.escape(v)
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def sweep_html(sw: Sweep, ui: str) -> str:
    p = sw.parent
    metric, mode = p.data.params.get("metric", ""), p.data.params.get("mode", "max")
    status: dict[str, int] = {}
    for t in sw.trials:
        status[t.info.status] = status.get(t.info.status, 0) + 1
    wall = ((p.info.end_time or p.info.start_time) - p.info.start_time) / 1000 if p.info.start_time else 0
    link = run_url(ui, sw.exp_id, p.info.run_id)
    parts = [f'<h3>sweep <code>{html.escape(p.data.tags.get(tracking.TAG_SWEEP, ""))}</code> '
             f'in <code>{html.escape(sw.experiment)}</code></h3>',
             f'<p class="meta"><a href="{link}">sweep run {p.info.run_id[:8]}</a> · {p.info.status} · started '
             f'{_when(p.info.start_time)} · wall time {wall / 60:.1f} min · trials: '
             + (", ".join(f"{n} {s.lower()}" for s, n in sorted(status.items())) or "none")
             + f' · objective <code>{html.escape(metric)}</code> ({html.escape(mode)})</p>']
    for name, md in sw.tables:
        parts.append(f'<h4>{html.escape(name)} <a class="src" href="{link}">(from the sweep run)</a></h4>')
        parts.append(markdown_html(md))
    parts += [_img(data, name) for name, data in sw.figures]
    scored = sorted((t for t in sw.trials if _finite(t.data.metrics.get(metric))), key=lambda t: t.info.start_time)
    if scored:
        parts.append(_img(best_so_far_png([t.data.metrics[metric] for t in scored], mode, metric),
                          f"best {metric} so far over {len(scored)} trials"))
        top = sorted(scored, key=lambda t: t.data.metrics[metric], reverse=(mode == "max"))[:TOP_TRIALS]
        keys = sorted({k for t in top for k in t.data.params if k not in ("seed",)})[:8]
        parts.append(f"<h4>best trials by {html.escape(metric)}</h4><table><thead><tr><th>trial run</th>"
                     f"<th>{html.escape(metric)}</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys)
                     + "</tr></thead><tbody>")
        for t in top:
            u = run_url(ui, sw.exp_id, t.info.run_id)
            parts.append(f'<tr><td><a href="{u}">{html.escape(t.info.run_name or t.info.run_id[:8])}</a></td>'
                         f'<td><a href="{u}">{_fmt(t.data.metrics[metric])}</a></td>'
                         + "".join(f"<td>{_fmt(t.data.params.get(k, ''))}</td>" for k in keys) + "</tr>")
        parts.append("</tbody></table>")
    if sw.importances:
        shown = [(label, imp) for label, imp in sw.importances if isinstance(imp, dict)]
        rest = [label for label, imp in sw.importances if not isinstance(imp, dict)]
        if len(rest) > 3:  # many strata of a trial or two each: one line, not one per stratum
            shown.append(("", f"{len(rest)} studies have too few trials or no varied parameter"))
        else:
            shown += [(label, imp) for label, imp in sw.importances if not isinstance(imp, dict)]
        parts.append("<h4>parameter importances (Optuna, fANOVA)</h4><ul>")
        for label, imp in shown:
            body = (", ".join(f"{html.escape(k)} {v:.2f}" for k, v in imp.items()) if isinstance(imp, dict)
                    else html.escape(imp))
            parts.append(f"<li>{html.escape(label)}{': ' if label else ''}{body}</li>")
        parts.append("</ul>")
    if sw.gallery:
        parts.append('<h4>examples</h4><div class="gallery">' + "".join(_img(d, n) for n, d in sw.gallery) + "</div>")
    return "\n".join(parts)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3}figure{display:inline-block;margin:.5em}img{max-width:520px}figcaption{font-size:12px}
.meta{color:#555;font-size:13px}.missing{color:#a00}.gallery img{max-width:240px}a.src{font-size:12px}
nav a{margin-right:1em}"""


def build(c, uri: str, experiments: list | None = None, *, ui: str = UI,
          docs: str = "docs/results.md in the reconlab repository") -> str:
    """The report's HTML from the store ``uri`` behind client ``c``: every
    study's section, from the sweeps in ``experiments`` (names), or in every
    experiment. Without ``experiments``, each installed study without runs
    says its command."""
    known = installed_sections()
    found = {e.name: e for e in c.search_experiments(max_results=1000)}
    sections: dict[str, Section] = {} if experiments else dict(known)
    by_study: dict[str, list[Sweep]] = {}
    for n in experiments or sorted(found):
        for sw in load_sweeps(c, found[n]):
            sec = section_of(sw.parent, n, known)
            sections.setdefault(sec.key, sec)
            by_study.setdefault(sec.key, []).append(sw)
    body = [f"<h1>reconlab report</h1><p class=\"meta\">built {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}"
            f" from {html.escape(tracking.redact(uri))}; method and every figure's command: "
            + (f"<a href=\"{html.escape(docs)}\">docs/results.md</a>" if "://" in docs else html.escape(docs))
            + "</p><nav>"
            + "".join(f'<a href="#{html.escape(f.key)}">{html.escape(f.title)}</a>' for f in sections.values())
            + "</nav>"]
    for f in sections.values():
        body.append(f'<section id="{html.escape(f.key)}"><h2>{html.escape(f.title)}</h2>'
                    + (f'<p class="meta">research: {html.escape(f.research)}</p>' if f.research else ""))
        sweeps = by_study.get(f.key, [])
        if not sweeps:
            body.append(f'<p class="missing">No runs of this study in the store yet: run '
                        f'<code>{html.escape(f.command)}</code>.</p>')
        body += [sweep_html(s, ui) for s in sweeps]
        body.append("</section>")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>reconlab report</title><style>{CSS}"
            f"</style></head><body>{''.join(body)}</body></html>")


def write(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path



def main(argv: list[str] | None = None) -> int:
    """``python dashboards/build_report.py``: writes ``<out>/index.html``."""
    import argparse

    from reconlab.errors import InputError

    ap = argparse.ArgumentParser(prog="build_report.py", description="Build the reconlab HTML report from MLflow.")
    ap.add_argument("--experiment", action="append", metavar="NAME",
                    help="an MLflow experiment to report (repeatable; default: every experiment with a sweep)")
    ap.add_argument("--tracking-uri", help="the MLflow store (default: MLFLOW_TRACKING_URI, else the storage "
                                           "directory's mlflow.db)")
    ap.add_argument("--storage-path", help="the jobs' storage directory (default: ./reconlab_results)")
    ap.add_argument("--out", metavar="DIR", help="where index.html goes (default: <storage directory>/report)")
    ap.add_argument("--ui", default=UI, help=f"the MLflow UI the links point at (default: {UI}, `make ui`)")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise
    storage_dir = tracking.results_dir(args.storage_path)
    uri = tracking.resolve_tracking_uri(args.tracking_uri, storage_dir)
    if uri.startswith("sqlite:///") and not os.path.isfile(uri.split("sqlite:///", 1)[1]):
        raise InputError("no MLflow store there yet (run `make run` or a job first)",
                         key="--tracking-uri" if args.tracking_uri else "--storage-path",
                         value=tracking.redact(uri) if args.tracking_uri else storage_dir)
    tracking.check_tracking_uri(uri)
    c = tracking.client(uri)
    known = {e.name: e.experiment_id for e in c.search_experiments(max_results=1000)}
    for name in args.experiment or []:
        if name not in known:
            raise InputError("no such experiment in the store", key="--experiment", value=name)
        if not holds_sweep(c, known[name]):
            raise InputError("the experiment holds no reconlab sweep run (tag reconlab.sweep)", key="--experiment",
                             value=name)
    out = os.path.join(args.out or os.path.join(storage_dir, "report"), "index.html")
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs",
                        "results.md")
    docs = f"file://{docs}" if os.path.isfile(docs) else "docs/results.md in the reconlab repository"
    t0 = dt.datetime.now()
    write(out, build(c, uri, args.experiment, ui=args.ui.rstrip("/"), docs=docs))
    print(f"report: {out} ({(dt.datetime.now() - t0).total_seconds():.1f} s)")
    return 0
