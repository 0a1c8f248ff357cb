"""TrainConfig refuses nonsense with a message that names the field."""

import pytest
from pydantic import ValidationError

from trainer.config import PRESETS, TrainConfig, form_fields


@pytest.mark.parametrize(
    "values, field, words",
    [
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"image_size": 50}, "image_size", "32, 64, 96, 128"),
        ({"lr_g": -1e-4}, "lr_g", "greater than 0"),
        ({"lr_d": 0}, "lr_d", "greater than 0"),
        ({"beta1": 1.0}, "beta1", "less than 1"),
        ({"dataset": "imagenet"}, "dataset", "emoji"),
        ({"dataset": "folder", "data_path": "/no/such/folder"}, "data_path", "does not exist"),
        ({"dataset": "folder"}, "data_path", "needs data_path"),
        ({"channels": 2}, "channels", "1 (greyscale) or 3"),
        ({"device": "tpu"}, "device", "cpu, cuda or cuda:N"),
        ({"netg_init": "/no/such/netg.pth"}, "netg_init", "does not exist"),
        ({"batchsize": 64}, "batchsize", "Extra inputs are not permitted"),
        ({"epochs": "many"}, "epochs", "valid integer"),
    ],
)
def test_bad_values_name_the_field(values, field, words):
    with pytest.raises(ValidationError) as info:
        TrainConfig(**values)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert words in errors[0]["msg"]


def test_folder_that_is_a_file(tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    with pytest.raises(ValidationError, match="is not a folder"):
        TrainConfig(dataset="folder", data_path=str(f))


def test_article_preset_is_the_article():
    cfg = TrainConfig.preset("article")
    assert (cfg.image_size, cfg.batch_size, cfg.epochs, cfg.ngf, cfg.ndf, cfg.nz) == (96, 256, 200, 64, 64, 100)
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.d_every, cfg.g_every) == (2e-4, 2e-4, 0.5, 1, 5)


def test_quick_is_the_default_and_presets_validate():
    assert TrainConfig() == TrainConfig.preset("quick")
    assert TrainConfig().dataset == "emoji"
    for name in PRESETS:
        TrainConfig.preset(name)
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.preset("huge")


def test_form_fields_cover_every_field_with_group_and_help():
    fields = form_fields()
    assert [f["name"] for f in fields] == list(TrainConfig.model_fields)
    assert all(f["help"] and f["group"] in ("data", "model", "optimisation", "schedule", "hardware") for f in fields)
    assert next(f for f in fields if f["name"] == "dataset")["choices"][0] == "emoji"
