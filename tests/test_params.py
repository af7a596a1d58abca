"""Typed parameters: parsing, defaults and the reasons given for bad values."""
import pytest

from ocf_lib.ocf.params import BOOLEAN, INTEGER, STRING, TIME, Param, ParamError


def param(kind, **kw):
    return Param("p", kind, shortdesc="a parameter", **kw)


@pytest.mark.parametrize("text", ["yes", "true", "1", "on", "ja", "TRUE", "True", "YeS", "On"])
def test_boolean_accepts_what_ocf_is_true_accepts_in_any_case(text):
    assert param(BOOLEAN).parse(text) is True


@pytest.mark.parametrize("text", ["no", "false", "0", "off", "nein", "False", "OFF"])
def test_boolean_false_values(text):
    assert param(BOOLEAN).parse(text) is False


@pytest.mark.parametrize("text", ["maybe", "2", "y e s", "-f", "true;reboot"])
def test_boolean_refuses_what_is_neither(text):
    with pytest.raises(ParamError, match="not a boolean"):
        param(BOOLEAN).parse(text)


def test_empty_value_means_default():
    assert param(INTEGER, default=5).parse("") == 5
    assert param(BOOLEAN, default=None).parse("") is None


@pytest.mark.parametrize("text,value", [("0", 0), ("42", 42), ("-3", -3), ("+7", 7)])
def test_integer_parses_decimal(text, value):
    assert param(INTEGER).parse(text) == value


@pytest.mark.parametrize("text", ["1.5", "0x10", " 4", "4 ", "five", "٣", "1" * 40, "-", "$(id)"])
def test_integer_refuses_non_decimal(text):
    with pytest.raises(ParamError, match="not an integer"):
        param(INTEGER).parse(text)


def test_integer_bounds_name_the_limit():
    with pytest.raises(ParamError, match="below the minimum 1"):
        param(INTEGER, minimum=1).parse("0")
    with pytest.raises(ParamError, match="above the maximum 10"):
        param(INTEGER, maximum=10).parse("11")


@pytest.mark.parametrize("text,seconds", [("30", 30), ("30s", 30), ("500ms", 0.5), ("2min", 120),
                                          ("2m", 120), ("1h", 3600), ("10 s", 10)])
def test_time_understands_pacemaker_units(text, seconds):
    assert param(TIME).parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "1.5s", "-1s", "s", "10 parsecs"])
def test_time_refuses_nonsense(text):
    with pytest.raises(ParamError, match="not a time"):
        param(TIME).parse(text)


def test_string_choices_and_nul():
    choice = param(STRING, choices=("a", "b"))
    assert choice.parse("a") == "a"
    with pytest.raises(ParamError, match="not one of: a, b"):
        choice.parse("c")
    with pytest.raises(ParamError, match="NUL"):
        param(STRING).parse("x\x00y")


def test_error_message_quotes_control_characters_on_one_line():
    with pytest.raises(ParamError) as err:
        param(INTEGER).parse("1\n2")
    assert "\n" not in str(err.value)


def test_defaults_as_metadata_shows_them():
    assert param(BOOLEAN, default=True).default_text() == "true"
    assert param(TIME, default=0.5).default_text() == "500ms"
    assert param(TIME, default=30.0).default_text() == "30s"
    assert param(STRING).default_text() == ""
