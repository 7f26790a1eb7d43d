"""Argument checks, shared by every env config and command line, with one-line messages.

Each check names the argument, says what it must be and shows what it got::

    top_k must be an integer, got 2.0 (float)
    k1 must be >= 0, got -1.0

A wrong type raises ``TypeError``, a value out of range or not among the choices ``ValueError``.
The rules:

- integers are ``int`` or numpy integers, never ``bool`` and never a float, not even ``3.0``
  (a float where a count is meant is a bug upstream, and numba kernels are typed by it);
- real numbers are ints or floats (numpy's too), never ``bool``, and finite;
- choices are compared with ``==`` against a tuple of allowed values.

Command lines use the same checks through :func:`cli_type` (``argparse``'s ``type=``).

>>> check_int("top_k", 3, minimum=1)
3
>>> check_int("top_k", 2.0, minimum=1)
Traceback (most recent call last):
...
TypeError: top_k must be an integer, got 2.0 (float)
>>> check_float("b", 1.5, minimum=0, maximum=1)
Traceback (most recent call last):
...
ValueError: b must be <= 1, got 1.5
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def _error(kind: type[T], name: str, requirement: str, shown: str) -> T:
    # A plain TypeError/ValueError (tracebacks and doctests read as users expect, and code that
    # re-raises ``type(error)(text)``, as gym.make does, still can); the message's parts ride
    # along as attributes for cli_type.
    error = kind(f"{name} must be {requirement}, got {shown}")
    error.requirement, error.shown = requirement, shown  # type: ignore[attr-defined]
    return error


def show(value: Any, with_type: bool = False) -> str:
    """A one-line, bounded ``repr`` of ``value`` (its type's name when the repr is unwieldy).

    >>> show("3", with_type=True), show(object()).startswith("<object")
    ("'3' (str)", True)
    """
    text = repr(value)
    if "\n" in text or len(text) > 80:
        text = f"<{type(value).__name__} object>"
        with_type = False
    return f"{text} ({type(value).__name__})" if with_type else text


def _type_error(name: str, requirement: str, value: Any) -> TypeError:
    return _error(TypeError, name, requirement, show(value, with_type=True))


def _check_range(name: str, value: Any, minimum: Any, maximum: Any, above: Any) -> None:
    # `not value >= minimum` so that a NaN fails too.
    if minimum is not None and not value >= minimum:
        raise _error(ValueError, name, f">= {minimum}", show(value))
    if above is not None and not value > above:
        raise _error(ValueError, name, f"> {above}", show(value))
    if maximum is not None and not value <= maximum:
        raise _error(ValueError, name, f"<= {maximum}", show(value))


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None, optional: bool = False
) -> Any:
    """``value`` if it is an integer (not a bool, not a float) in ``[minimum, maximum]``.

    ``optional=True`` lets ``None`` through. Returns the value unchanged.
    """
    if value is None and optional:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _type_error(name, "an integer" + (" or None" if optional else ""), value)
    _check_range(name, value, minimum, maximum, None)
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    optional: bool = False,
) -> Any:
    """``value`` if it is a finite real number (int or float, not a bool) within the bounds.

    ``minimum``/``maximum`` are inclusive, ``above`` is an exclusive lower bound.
    """
    if value is None and optional:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _type_error(name, "a number" + (" or None" if optional else ""), value)
    if not math.isfinite(value):
        raise _error(ValueError, name, "a finite number", show(value))
    _check_range(name, value, minimum, maximum, above)
    return value


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """``value`` if it equals one of ``choices`` (a non-string where strings are meant: TypeError)."""
    try:
        if value in choices:
            return value
    except (TypeError, ValueError):  # e.g. an array: not a choice either
        pass
    if isinstance(value, str) or not all(isinstance(c, str) for c in choices if c is not None):
        raise _error(ValueError, name, f"one of {choices}", show(value))
    raise _error(TypeError, name, f"one of {choices}", show(value, with_type=True))


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (numpy's bool too), not any truthy object."""
    if not isinstance(value, bool | np.bool_):
        raise _type_error(name, "True or False", value)
    return value


def check_str(name: str, value: Any, *, optional: bool = False, empty: bool = False) -> Any:
    """``value`` if it is a string (non-empty unless ``empty=True``; ``None`` if ``optional``)."""
    if value is None and optional:
        return value
    if not isinstance(value, str):
        kind = "a string" if empty else "a non-empty string"
        raise _type_error(name, kind + (" or None" if optional else ""), value)
    if not value and not empty:
        raise _error(ValueError, name, "a non-empty string", show(value))
    return value


def check_items(name: str, value: Any, check_item: Callable[[str, Any], Any], what: str) -> Any:
    """``value`` if it is ``None`` or a non-empty list/tuple whose items all pass ``check_item``.

    >>> check_items("question_kinds", ("single",), lambda n, v: check_choice(n, v, ("single",)), "kind")
    ('single',)
    >>> check_items("question_ids", [], check_str, "question id")
    Traceback (most recent call last):
    ...
    ValueError: question_ids must name at least one question id or be None, got []
    """
    if value is None:
        return value
    check_instance(name, value, (list, tuple), what=f"a list of {what}s", optional=True)
    if not value:
        raise ValueError(f"{name} must name at least one {what} or be None, got {value!r}")
    for item in value:
        check_item(name, item)
    return value


def check_instance(
    name: str, value: Any, kind: type | tuple[type, ...], *, optional: bool = False, what: str | None = None
) -> Any:
    """``value`` if it is an instance of ``kind`` (``None`` too when ``optional``).

    ``what`` describes the accepted values in the message (default: the class names).
    """
    if value is None and optional:
        return value
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        what = what or " or ".join(f"a {k.__name__}" for k in kinds)
        raise _type_error(name, what + (" or None" if optional else ""), value)
    return value


def check_folder(name: str, path: Any) -> str:
    """``path`` if it is an existing folder; else a one-line error that says it does not exist.

    For model folders: nothing is looked up on a hub, so a missing folder is an error here, not a
    ``Repo id must be in the form ...`` from deep inside ``from_pretrained``.
    """
    check_str(name, path)
    if not os.path.isdir(path):
        what = "a file, not a folder" if os.path.exists(path) else "does not exist"
        raise _error(ValueError, name, "an existing folder", f"{path!r} ({what})")
    return path


def cli_type(check: Callable[..., T], parse: Callable[[str], Any], **bounds: Any) -> Callable[[str], T]:
    """An ``argparse`` ``type=`` that parses the text with ``parse``, then applies ``check``.

    argparse prefixes the flag, so the message reads ``argument --k1: must be >= 0, got -1.0``.

    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--k1", type=cli_type(check_float, float, minimum=0))
    >>> parser.parse_args(["--k1", "1.2"]).k1
    1.2
    """

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(
                parse, f"a {getattr(parse, '__name__', 'value')}"
            )
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        try:
            return check("value", value, **bounds)
        except (TypeError, ValueError) as error:
            if not hasattr(error, "requirement"):
                raise argparse.ArgumentTypeError(str(error)) from None
            raise argparse.ArgumentTypeError(f"must be {error.requirement}, got {error.shown}") from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert
