import shutil

import pytest
import yaml

from iagan.errors import UserError
from iagan.grids import use_grid
from tests.conftest import REPO


def test_params_yaml_runs_the_embedded_grid():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    embedded = yaml.safe_load((REPO / "configs/tasks-embedded.yaml").read_text())
    assert params["tasks"] == embedded["tasks"]


def test_switching_grids_keeps_other_params_and_comments(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    before = yaml.safe_load((tmp_path / "params.yaml").read_text())
    use_grid("paper", tmp_path / "params.yaml", REPO / "configs")
    text = (tmp_path / "params.yaml").read_text()
    after = yaml.safe_load(text)
    assert set(after["tasks"]) >= {"sr_x8_n40", "sr_x16_n10", "sr_x32_n0", "cs_r30_n10", "deblur_k9_n10"}
    assert len(after["tasks"]) == 12
    assert {k: v for k, v in after.items() if k != "tasks"} == {k: v for k, v in before.items() if k != "tasks"}
    assert "# paper eq. 4" in text
    use_grid("embedded", tmp_path / "params.yaml", REPO / "configs")
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == before
    with pytest.raises(UserError, match="unknown task grid 'celeba'"):
        use_grid("celeba", tmp_path / "params.yaml", REPO / "configs")


def test_switching_grids_keeps_what_follows_tasks_and_refuses_to_drop_a_custom_grid(tmp_path):
    path = tmp_path / "params.yaml"
    text = (REPO / "params.yaml").read_text()
    custom = text.replace("  deblur_k9_n10: {operator: deblur_gaussian, kernel: 9, noise: 10}\n",
                          "  deblur_k9_n10: {operator: deblur_gaussian, kernel: 9, noise: 10}\n"
                          "  mine: {operator: cs_gaussian, ratio: 0.1}\n")
    path.write_text(custom + "\n# a section after the tasks\nextra_note: kept\n")
    with pytest.raises(UserError, match=r"not one of the named grids.*--force"):
        use_grid("paper", path, REPO / "configs")
    use_grid("paper", path, REPO / "configs", force=True)
    after = path.read_text()
    assert "mine:" not in after and "# a section after the tasks\nextra_note: kept\n" in after
    assert len(yaml.safe_load(after)["tasks"]) == 12
