"""api.parse_config: -M / -T strings -> typed config dataclasses, with readable errors."""

from __future__ import annotations

import pytest
from helpers import ToyRandomConfig, ToySearchConfig

from deeprobe_bench import api


def test_defaults_when_no_options():
    cfg = api.parse_config(ToyRandomConfig, None)
    assert cfg == ToyRandomConfig()


def test_types_are_converted():
    cfg = api.parse_config(ToyRandomConfig, {"k": "5", "scale": "0.5", "note": "hi"})
    assert cfg.k == 5 and isinstance(cfg.k, int)
    assert cfg.scale == 0.5 and isinstance(cfg.scale, float)
    assert cfg.note == "hi"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("yes", True), ("on", True), ("false", False), ("0", False), ("No", False)],
)
def test_bools(text, expected):
    assert api.parse_config(ToyRandomConfig, {"normalize": text}).normalize is expected


def test_bad_bool_is_a_config_error():
    with pytest.raises(api.ConfigError, match="normalize.*boolean"):
        api.parse_config(ToyRandomConfig, {"normalize": "maybe"})


def test_literal_accepts_choices_and_lists_them_on_error():
    assert api.parse_config(ToyRandomConfig, {"arch": "b"}).arch == "b"
    with pytest.raises(api.ConfigError, match="expected one of a, b"):
        api.parse_config(ToyRandomConfig, {"arch": "c"})


def test_tuples_from_comma_separated_values():
    assert api.parse_config(ToyRandomConfig, {"dims": "1,2,3"}).dims == (1, 2, 3)
    assert api.parse_config(ToyRandomConfig, {"dims": ""}).dims == ()
    with pytest.raises(api.ConfigError, match="dims"):
        api.parse_config(ToyRandomConfig, {"dims": "1,x"})


def test_optional_values():
    assert api.parse_config(ToySearchConfig, {"budget": "none"}).budget is None
    assert api.parse_config(ToySearchConfig, {"budget": "7"}).budget == 7
    assert api.parse_config(ToyRandomConfig, {"note": "None"}).note is None


def test_unknown_key_lists_valid_keys():
    with pytest.raises(api.ConfigError) as info:
        api.parse_config(ToyRandomConfig, {"kk": "3"}, what="-M option of toy-random")
    msg = str(info.value)
    assert "kk" in msg and "-M option of toy-random" in msg
    assert "valid keys: arch, dims, k, normalize, note, scale" in msg


def test_wrong_type_names_key_and_type():
    with pytest.raises(api.ConfigError, match=r"k='three': expected int"):
        api.parse_config(ToyRandomConfig, {"k": "three"})
    with pytest.raises(api.ConfigError, match="finite"):
        api.parse_config(ToyRandomConfig, {"scale": "nan"})


def test_post_init_validation_becomes_config_error():
    with pytest.raises(api.ConfigError, match="k must be >= 1"):
        api.parse_config(ToyRandomConfig, {"k": "0"})


def test_config_error_is_a_user_error():
    assert issubclass(api.ConfigError, api.UserError)


def test_already_typed_values_pass_through():
    assert api.parse_config(ToyRandomConfig, {"k": 4, "dims": (1,)}).k == 4


def test_config_to_dict_is_json_ready():
    cfg = api.parse_config(ToyRandomConfig, {"dims": "1,2"})
    assert api.config_to_dict(cfg)["dims"] == [1, 2]


def test_overrides_on_a_base_keep_its_other_fields_and_are_type_checked():
    base = api.parse_config(ToySearchConfig, {"budget": "7"})
    field = next(k for k in api.config_to_dict(base) if k != "budget")
    out = api.parse_config(ToySearchConfig, {"budget": "9"}, base=base)
    assert out.budget == 9 and getattr(out, field) == getattr(base, field)
    with pytest.raises(api.ConfigError, match="budget"):
        api.parse_config(ToySearchConfig, {"budget": "many"}, base=base)


@pytest.mark.parametrize("values", [(), ("a", "z")])
def test_a_subset_field_must_be_non_empty_and_within_the_allowed_values(values):
    api.check_subset("positions", ("a", "b"), ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"positions must be a non-empty subset of a, b, c"):
        api.check_subset("positions", values, ("a", "b", "c"))
