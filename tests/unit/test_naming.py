"""generator.naming: case changes, escaping, and the one function through which spec text
becomes Python source."""

from __future__ import annotations

import ast
import builtins
import keyword

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator import naming

WORDS = [
    ("trashProcessor", ["trash", "Processor"]),
    ("FILE_EVENTS", ["FILE", "EVENTS"]),
    ("x-y.z", ["x", "y", "z"]),
    ("HTTPServerError", ["HTTP", "Server", "Error"]),
    ("fileIDs", ["file", "I", "Ds"]),
    ("eventV2", ["event", "V2"]),
    ("  spaced  out ", ["spaced", "out"]),
    ("", []),
    ("イベント", []),
]


@pytest.mark.parametrize(("name", "expected"), WORDS)
def test_words(name: str, expected: list[str]) -> None:
    assert naming.words(name) == expected


PASCAL = [
    ("file-deleted", "FileDeleted"),
    ("FileDeletedEvent", "FileDeletedEvent"),
    ("fileDeletedEvent", "FileDeletedEvent"),
    ("trash_processor", "TrashProcessor"),
    ("FILE_EVENTS", "FILEEVENTS"),
    ("class", "Class"),
    ("import", "Import"),
    ("None", "None_"),
    ("True", "True_"),
    ("BaseModel", "BaseModel_"),
    ("EventModel", "EventModel_"),
    ("Field", "Field_"),
    ("TimeoutError", "TimeoutError_"),
    ("2fa", "N2fa"),
    ("", "Unnamed"),
    ("イベント", "Unnamed"),
]


@pytest.mark.parametrize(("name", "expected"), PASCAL)
def test_pascal(name: str, expected: str) -> None:
    assert naming.pascal(name) == expected


SNAKE = [
    ("fileId", "file_id"),
    ("eventId", "event_id"),
    ("HTTPServerError", "http_server_error"),
    ("FILE_EVENTS", "file_events"),
    ("x-y.z", "x_y_z"),
    ("class", "class_"),
    ("from", "from_"),
    ("import", "import_"),
    ("type", "type_"),
    ("match", "match_"),
    ("self", "self_"),
    ("payload", "payload_"),
    ("msg_id", "msg_id_"),
    ("2fast", "n2fast"),
    ("", "unnamed"),
]


@pytest.mark.parametrize(("name", "expected"), SNAKE)
def test_snake(name: str, expected: str) -> None:
    assert naming.snake(name) == expected


CONSTANT = [
    ("trashProcessor", "TRASH_PROCESSOR"),
    ("analytics-service", "ANALYTICS_SERVICE"),
    ("STREAMS", "STREAMS_"),
    ("consumers", "CONSUMERS_"),
    ("9lives", "n9LIVES"),
]


@pytest.mark.parametrize(("name", "expected"), CONSTANT)
def test_constant(name: str, expected: str) -> None:
    assert naming.constant(name) == expected


@pytest.mark.parametrize(
    "name", [*keyword.kwlist, *keyword.softkwlist, "print", "list", "id", *sorted(naming.RESERVED)]
)
def test_escape_appends_underscore_to_taken_names(name: str) -> None:
    assert naming.escape(name) == name + "_"


@pytest.mark.parametrize("name", ["file_id", "FileDeleted", "Class", "trash", "x1"])
def test_escape_leaves_free_names_alone(name: str) -> None:
    assert naming.escape(name) == name


def _usable(identifier: str) -> bool:
    return (
        identifier.isidentifier()
        and not keyword.iskeyword(identifier)
        and not keyword.issoftkeyword(identifier)
        and identifier not in dir(builtins)
        and identifier not in naming.RESERVED
    )


@given(st.text(max_size=40))
def test_every_derived_name_is_a_usable_identifier(name: str) -> None:
    for derive in (naming.pascal, naming.snake, naming.constant):
        assert _usable(derive(name)), (derive.__name__, name, derive(name))
    assert naming.pascal(name)[0].isupper()


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_names_with_the_same_words_meet(name: str) -> None:
    """Collisions are decided on words: the same words in another spelling give the same name."""
    words = naming.words(name)
    assert naming.snake("-".join(words)) == naming.snake(name)
    assert naming.constant("_".join(words)) == naming.constant(name)


ADVERSARIAL = [
    "",
    "plain",
    '"""',
    "'''",
    "\"'\"'",
    '"; import os; os.system("x"); "',
    '\n import os; os.system("x")',
    "'''\nimport os\n'''",
    '"""\nimport os\n"""',
    "\\",
    "trailing backslash \\",
    '\\"',
    "\\'",
    "# comment",
    "{{ 7*7 }} {% if x %}{% endif %}",
    "\x00\x01\x1b\x7f",
    "\r\n\t\x0b\x0c",
    "\u2028\u2029\u0085",
    "\ud800 lone surrogate",
    "😀 astral",
    "\N{RIGHT-TO-LEFT OVERRIDE}evil",
    "f'{__import__(\"os\")}'",
    "b'bytes'",
]


def _literal_round_trip(text: str) -> None:
    literal = naming.py_str(text)
    assert ast.literal_eval(literal) == text
    tree = ast.parse(literal, mode="eval")
    assert isinstance(tree.body, ast.Constant) and tree.body.value == text
    assert "\n" not in literal and "\r" not in literal, "a literal must stay on one line"
    # Inside code, the literal is still one string constant: nothing escapes into the module.
    module = ast.parse(f"x = {literal}\n")
    assert [type(n).__name__ for n in ast.walk(module)] == [
        "Module",
        "Assign",
        "Name",
        "Constant",
        "Store",
    ]


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_py_str_adversarial(text: str) -> None:
    _literal_round_trip(text)


@given(st.text())
def test_py_str_round_trips_any_text(text: str) -> None:
    _literal_round_trip(text)


def test_py_str_accepts_non_strings_as_text() -> None:
    assert ast.literal_eval(naming.py_str(42)) == "42"  # type: ignore[arg-type]


ONE_LINE = [
    (None, 88, ""),
    ("", 88, ""),
    ("  a\n  b\tc  ", 88, "a b c"),
    ("x" * 88, 88, "x" * 88),
    ("x" * 89, 88, "x" * 87 + "…"),
    ("word " * 30, 20, "word word word word…"),
]


@pytest.mark.parametrize(("text", "limit", "expected"), ONE_LINE)
def test_one_line(text: str | None, limit: int, expected: str) -> None:
    assert naming.one_line(text, limit) == expected
    assert len(naming.one_line(text, limit)) <= limit


PRINTABLE = [
    ("plain text", "plain text"),
    ("keeps\nnewlines\tand tabs", "keeps\nnewlines\tand tabs"),
    ("é ü 😀 ©", "é ü 😀 ©"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("\x00", "\\x00"),
    ("\r", "\\r"),
    ("rtl \u202e override", "rtl \\u202e override"),
    ("line\u2028separator", "line\\u2028separator"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
]


@pytest.mark.parametrize(("text", "expected"), PRINTABLE)
def test_printable(text: str, expected: str) -> None:
    assert naming.printable(text) == expected


@given(st.text())
def test_printable_leaves_nothing_invisible(text: str) -> None:
    result = naming.printable(text)
    assert all(c.isprintable() or c in "\n\t" for c in result)
    assert naming.printable(result) == result
