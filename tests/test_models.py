import pytest
import torch

from reconlab.models import BUILDERS, build
from reconlab.errors import ConfigError


CLASSIFIERS = sorted(n for n in BUILDERS if n.startswith("classifier"))


def test_every_builder_is_covered():
    assert set(BUILDERS) == {*CLASSIFIERS, "unet", "deep_decoder", "dip_skip", "dncnn", "n2n_unet", "vae"}  # a new
    # builder needs a test here (deep_decoder and dip_skip: tests/test_deep_decoder.py; n2n_unet: tests/test_n2n.py;
    # vae: tests/test_vae.py)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_maps_digits_to_logits(name):
    torch.manual_seed(0)
    m = build(name).eval()
    out = m(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    has_bn = any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    # the BN prior needs BatchNorm; the report's net, the thesis's plain CNN and two verifier architectures have none
    assert has_bn == (name not in {"classifier_report", "classifier_plain", "classifier_lenet", "classifier_mlp"})


def test_dncnn_is_residual_and_keeps_the_shape():
    torch.manual_seed(0)
    m = build("dncnn", channels=3, width=8, depth=4).eval()
    x = torch.rand(2, 3, 20, 24)
    out = m(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x - m.residual(x))  # D(x) = x - R(x)
    assert sum(isinstance(layer, torch.nn.Conv2d) for layer in m.modules()) == 4


def test_unknown_builder_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model builder"):
        build("resnet9000")


def test_a_long_classifier_fit_reports_every_kth_epoch():
    from reconlab.training.classifier import report_every

    assert [report_every(n) for n in (1, 12, 25, 26, 200)] == [1, 1, 1, 2, 8]
