import pytest
from PIL import Image

from mechscope.data.folders import ImageFolder
from mechscope.data.open import open_dataset, parse_spec
from mechscope.errors import MechscopeError


def test_folder_spec_gives_an_image_folder(tmp_path):
    Image.new("RGB", (30, 20), "blue").save(tmp_path / "a.png")
    ds = open_dataset(str(tmp_path), 8)
    assert isinstance(ds, ImageFolder) and ds.size == 8 and len(ds) == 1


def test_shapes_specs_parse():
    assert parse_spec("shapes:10") == ("shapes", {"n": 10, "seed": 0})
    assert parse_spec("shapes:10:4") == ("shapes", {"n": 10, "seed": 4})


def test_shapes_spec_opens_the_world():
    ds = open_dataset("shapes:6:2", 32)
    (indices, images), = list(ds.batches(6))
    assert len(ds) == 6 and indices == list(range(6)) and images.shape == (6, 3, 32, 32)
    assert float(images.min()) >= 0 and float(images.max()) <= 1 and ds.skipped == []


@pytest.mark.parametrize("spec", ["shapes:", "shapes:x", "shapes:0", "shapes:5:-1", "shapes:1:2:3"])
def test_bad_shapes_specs_say_the_form(spec):
    with pytest.raises(MechscopeError, match="shapes:N or shapes:N:SEED"):
        parse_spec(spec)


def test_unknown_spec_names_the_accepted_forms(tmp_path):
    with pytest.raises(MechscopeError, match="unknown dataset 'imagenet'.*accepted forms: a folder.*shapes:N"):
        open_dataset("imagenet", 8)
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(MechscopeError, match="is a file, not a folder"):
        open_dataset(str(tmp_path / "f.png"), 8)
