"""params.yaml is read once into checked, typed sections: every bad value and unknown key is one clear error."""

import copy

import pytest
import yaml

from iagan.config import Config, load_config
from iagan.errors import UserError
from tests.conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def config(**changes) -> Config:
    """The repository's params with dotted keys changed (a value of `...` deletes the key)."""
    raw = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        target = raw
        for part in path:
            target = target[part]
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return Config.from_dict(raw)


def test_the_repository_params_load():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.csgm.iters == 1800 and cfg.ia.lr_g == 1e-3 and cfg.protocol.name == "standard"
    assert cfg.task("cs_r30_n0").option("mask") == "uniform"  # cs.mask fills the tasks that leave it out
    assert cfg.task("sr_x2_n0").paper_setting == "scale=8"


@pytest.mark.parametrize("key, value, fragment", [
    ("seed", -1, "seed must be a whole number >= 0"),
    ("protocol", "papercode", "protocol must be one of standard, paper_code"),
    ("generator.name", "stylegan9", "generator.name must be one of"),
    ("data.source", "web", "data.source must be one of builtin, folder"),
    ("data.source", "folder", "data.path is empty"),
    ("data.limit", 0, "data.limit must be a whole number >= 1"),
    ("data.in_range", 1.5, "data.in_range must be a whole number >= 0"),
    ("engine.device", "tpu", "engine.device must be auto, cpu, cuda or cuda:N"),
    ("engine.precision", "fp16", "engine.precision must be one of"),
    ("engine.compile", "fast", "engine.compile must be one of"),
    ("engine.max_chunk", 0, "engine.max_chunk must be a whole number >= 1"),
    ("engine.ia_batching", "grouped", "engine.ia_batching must be one of"),
    ("engine.threads", 0, "engine.threads must be a whole number >= 1"),
    ("engine.threads", "many", "engine.threads must be a number"),
    ("csgm.iters", -1, "csgm.iters must be a whole number >= 0"),
    ("csgm.iters", float("nan"), "csgm.iters must be a finite number"),
    ("csgm.lr", 0, "csgm.lr must be > 0"),
    ("csgm.lr", -0.1, "csgm.lr must be > 0"),
    ("csgm.lr", float("nan"), "csgm.lr must be a finite number"),
    ("csgm.restarts", 1.5, "csgm.restarts must be a whole number >= 1"),
    ("csgm.restarts", True, "csgm.restarts must be a number"),
    ("ia.iters", "many", "ia.iters must be a number"),
    ("ia.lr_g", 0, "ia.lr_g must be > 0"),
    ("ia.lr_z", float("inf"), "ia.lr_z must be a finite number"),
    ("ia.lr_g_scaling", "adafactor", "ia.lr_g_scaling must be one of none, rms"),
    ("ia.stop_tau", 0, "ia.stop_tau must be > 0"),
    ("ia.quality_every", -1, "ia.quality_every must be a whole number >= 0"),
    ("ia.save_weights", "yes", "ia.save_weights must be true or false"),
    ("bp.eps", -1, "bp.eps must be >= 0"),
    ("bp.eps", float("nan"), "bp.eps must be a finite number"),
    ("cs.mask", "radial", "cs.mask must be one of uniform, variable_density"),
    ("report.figure_rows", 0, "report.figure_rows must be a whole number >= 1"),
    ("tasks", {}, "must name at least one task"),
    ("tasks.sr_x2_n0.noise", float("nan"), "noise must be a finite number"),
    ("tasks.sr_x2_n0.noise", float("inf"), "noise must be a finite number"),
])
def test_every_section_checks_its_values(key, value, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(")):
        config(**{key: value})


@pytest.mark.parametrize("key, suggestion", [("csgm.iter", "csgm.iters"), ("ia.lr_G", "ia.lr_g"),
                                              ("engine.thread", None), ("tasks_", "tasks"), ("bp.epsilon", "bp.eps")])
def test_an_unknown_key_names_the_closest_known_one(key, suggestion):
    section, _, name = key.rpartition(".")
    raw = copy.deepcopy(PARAMS)
    (raw[section] if section else raw)[name] = 1
    with pytest.raises(UserError, match="unknown") as err:
        Config.from_dict(raw)
    if suggestion:
        assert f"did you mean {suggestion}?" in str(err.value)


def test_a_missing_key_is_named():
    with pytest.raises(UserError, match="lacks ia.stop_tau"):
        config(**{"ia.stop_tau": ...})


def test_numbers_written_as_yaml_text_are_read_as_numbers():
    """PyYAML reads 1e-9 (no dot) as a string; a blur sigma or a learning rate so written still works."""
    cfg = config(**{"csgm.lr": "1e-1", "tasks.deblur_k9_n0.sigma": "1e-9"})
    assert cfg.csgm.lr == 0.1 and cfg.task("deblur_k9_n0").option("sigma") == 1e-9


def test_protocol_decides_what_runs():
    paper = config(protocol="paper_code", **{"csgm.restarts": 3})
    assert paper.csgm_for().restarts == 1
    ia = paper.ia_for(paper.task("cs_r30_n0"))
    assert ia.iters == 500 and ia.lr_g_scaling == "none" and ia.stop_tau is None
    standard = config(**{"csgm.restarts": 3})
    assert standard.csgm_for().restarts == 3 and standard.ia_for(standard.task("cs_r30_n0")).iters == 300


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\ncsgm:\n  iters: [1800\n")
    with pytest.raises(UserError, match=r"params.yaml line \d+, column \d+: not valid YAML"):
        load_config(path)


def test_unknown_task_suggests_the_closest():
    with pytest.raises(UserError, match="unknown task 'sr_x2_n1'; did you mean sr_x2_n10"):
        config().task("sr_x2_n1")
