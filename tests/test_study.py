"""The study API's engine side, in-process (issue 28): what a Study must
say, how studies are found, what the sweep run records of its study, and
how the report finds a study from runs (old runs too)."""

import dataclasses
import types

import pytest

from reconlab import dashboards, tracking
from reconlab.errors import InputError
from reconlab.sweep import study as st
from reconlab.sweep.runner import SweepRun, start_parent
from reconlab.sweep.spec import SweepSpec


@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    steps: int = 10
    report_every: int = 3
    seed: int = 0

    @property
    def double(self) -> int:
        return 2 * self.steps


def trial(config):
    pass


def make(**kw):
    return st.Study(**{"name": "mine", "title": "Mine", "research": "r", "command": "python my_job.py",
                       "search_space": "s.yaml", "config": Cfg, "metrics": ("loss",), "trainable": trial, **kw})


@dataclasses.dataclass
class Unseeded:
    lr: float = 0.1


@pytest.mark.parametrize("kw, msg", [({"name": "My-Study"}, "lower-case"), ({"config": dict}, "dataclass"),
                                     ({"config": Unseeded}, "'seed' field"),
                                     ({"trainable": None}, "trainable"), ({"metrics": ()}, "metrics")])
def test_a_study_that_cannot_run_is_refused_when_declared(kw, msg):
    with pytest.raises((TypeError, ValueError), match=msg):
        make(**kw)


def test_the_default_experiment_and_the_sweep_run_s_study_tags():
    s = make(name="deep_thing")
    assert s.default_experiment(False) == "reconlab-deep-thing"
    assert s.default_experiment(True) == "reconlab-deep-thing-smoke"
    assert make(experiment="mine").default_experiment(True) == "mine-smoke"
    assert s.tags() == {st.TAG_STUDY: "deep_thing", st.TAG_TITLE: "Mine", st.TAG_RESEARCH: "r",
                        st.TAG_COMMAND: "python my_job.py"}


def test_the_job_reads_the_sweep_s_values_through_the_trial_config():
    spec = SweepSpec(name="s", metric="loss", fixed={"steps": 20},
                     search={"report_every": {"type": "choice", "values": [2, 5]},
                             "lr": {"type": "loguniform", "low": 0.01, "high": 0.5}})
    job = st.Job(make(), types.SimpleNamespace(smoke_test=True, data_root=None), spec, "/s", "sqlite:///x")
    assert job.fixed("steps") == 20 and job.fixed("double") == 40  # properties of the config too
    assert job.largest("lr") == 0.5 and job.largest("report_every") == 5 and job.largest("steps") == 20
    assert job.reports("steps") == 7  # ceil(20 / report_every 3, the config's default: it is searched)
    assert job.smoke and job.threads == 1
    t = job.training()
    assert t["num_workers"] == 1 and t["retrain"] is False and t["uri"] == "sqlite:///x" and t["storage_dir"] == "/s"


def test_the_best_trials_table_orders_by_the_objective_and_skips_failures():
    def result(tid, loss, lr, error=None):
        return types.SimpleNamespace(metrics={"trial_id": tid, "loss": loss}, config={"lr": lr, "seed": 0},
                                     error=error)

    grid = [result("b", 0.5, 0.1), result("a", 0.2, 0.3), result("c", float("nan"), 0.2),
            result("d", 0.1, 0.4, error=RuntimeError()), result("e", 0.2, 0.05)]
    spec = SweepSpec(name="s", metric="loss", mode="min", search={"lr": {"type": "uniform", "low": 0, "high": 1}})
    job = st.Job(make(), types.SimpleNamespace(smoke_test=False), spec, "/s", "u")
    rows, cols = st.best_trials(job, grid)
    assert cols == ["trial", "loss", "lr"]
    assert [r["trial"] for r in rows] == ["a", "e", "b"]  # ties by trial id; NaN and errors out


def test_installed_studies_come_from_entry_points_and_a_broken_one_is_named(tmp_path, monkeypatch, capsys):
    found = st.installed()
    assert list(found)[:8] == sorted(found)[:8] and "ct" in found and found["ct"].title
    meta = tmp_path / "broken-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[reconlab.studies]\nbroken = no_such_module_here:STUDY\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError, match=r"key 'entry point reconlab.studies:broken' = 'no_such_module_here:STUDY': "
                                         r"does not load a study: ModuleNotFoundError"):
        st.installed()
    assert "broken" not in st.installed(strict=False) and "ct" in st.installed(strict=False)
    assert "no_such_module_here:STUDY does not load a study" in capsys.readouterr().err


def test_a_resumed_sweep_of_an_older_reconlab_gains_its_study_s_tags(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = tracking.client(uri)
    exp = tracking.experiment_id(c, "reconlab-mine", storage_dir=str(tmp_path), uri=uri)
    old = c.create_run(exp, tags={tracking.TAG_SWEEP: "s"}).info.run_id  # as runs were logged before studies
    c.set_terminated(old, "KILLED")
    spec = SweepSpec(name="s", metric="loss")
    resumed = SweepRun(c, exp, old, str(tmp_path / "tune" / "s"), "s", True)
    assert start_parent(c, exp, spec, storage_dir=str(tmp_path), resumed=resumed, extra_params={},
                        tags=make().tags()) is resumed
    run = c.get_run(old)
    assert run.info.status == "RUNNING" and run.data.tags[st.TAG_STUDY] == "mine"


def test_the_report_finds_a_study_from_the_run_never_from_the_experiment_name():
    known = {"ct": dashboards.Section("ct", "The CT case study", "thesis ch. 5", "python jobs/ct_case_study.py")}

    def run(tags):
        return types.SimpleNamespace(data=types.SimpleNamespace(tags=tags))

    tagged = run({st.TAG_STUDY: "ct", st.TAG_TITLE: "CT, as logged", st.TAG_RESEARCH: "r", st.TAG_COMMAND: "c"})
    assert dashboards.section_of(tagged, "anything-at-all", known) == dashboards.Section("ct", "CT, as logged", "r",
                                                                                          "c")
    mine = run({st.TAG_STUDY: "mine", st.TAG_TITLE: "Mine"})
    assert dashboards.section_of(mine, "reconlab-ct", known).key == "mine"
    # runs logged before sweep runs recorded their study: the jobs' old experiment names, else the experiment
    assert dashboards.section_of(run({}), "reconlab-ct-smoke", known) == known["ct"]
    assert dashboards.section_of(run({}), "my-old-sweeps", known).key == "experiment-my-old-sweeps"
