import os
import pickle

import pytest
import torch

from iagan.errors import UserError
from iagan.generators import load_generator
from iagan.generators.dcgan import load_dcgan, packaged_weights_path


def test_packaged_dcgan_loads_in_eval_mode(generator):
    assert packaged_weights_path().name == "weights.tar"
    assert not generator.training and all(not m.training for m in generator.modules())
    z = torch.randn(3, 100, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = generator(z)
    assert x.shape == (3, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert x.std() > 0.1  # real weights, not an untrained net
    with torch.no_grad():  # eval-mode BatchNorm: an image does not depend on its batch neighbours
        assert torch.allclose(generator(z[:1]), x[:1], atol=1e-5)


def test_unknown_generator_is_a_user_error():
    with pytest.raises(UserError, match="unknown generator"):
        load_generator("stylegan9")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_checkpoint_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.tar"
    with open(bad, "wb") as fh:
        pickle.dump({"netG_state_dict": _Payload()}, fh)
    with pytest.raises(UserError, match="cannot load generator checkpoint"):
        load_dcgan(bad)
    assert not (tmp_path / "PWNED").exists()


def test_checkpoint_with_the_wrong_layout_names_the_problem(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"netG_state_dict": {"main.0.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(UserError, match="does not match the dcgan-digiface-64 layout"):
        load_dcgan(path)
