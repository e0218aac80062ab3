"""The web action grammar: what parses, what it parses to, and what the errors say."""

from __future__ import annotations

import contextlib

import pytest

from reflectgym.core.types import ActionParseError
from reflectgym.envs.web import actions
from reflectgym.envs.web.actions import WebAction, parse_web_action


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("click(12)", WebAction("click", element=12)),
        ("click([12])", WebAction("click", element=12)),
        ('click("7")', WebAction("click", element=7)),
        ('type(4, "hello world")', WebAction("type", element=4, text="hello world")),
        ("type(4, 'it\\'s')", WebAction("type", element=4, text="it's")),
        ('type(4, "a, b) c")', WebAction("type", element=4, text="a, b) c")),
        ('select(5, "Blue")', WebAction("select", element=5, text="Blue")),
        ('press("Enter")', WebAction("press", text="Enter")),
        ("press(enter)", WebAction("press", text="Enter")),
        ('press("Control+a")', WebAction("press", text="Control+a")),
        ("scroll(down)", WebAction("scroll", text="down")),
        ('scroll("up")', WebAction("scroll", text="up")),
        ("scroll(9)", WebAction("scroll", element=9)),
        ("wait", WebAction("wait")),
        ("done()", WebAction("done")),
        ("  DONE.  ", WebAction("done")),
        ("I will press the button.\nAction: click(3)", WebAction("click", element=3)),
        ("First click(2) then click(3)", WebAction("click", element=2)),
        ("Thinking about click(1)...\nAction: done", WebAction("done")),
        ("hover([7])", WebAction("hover", element=7)),
        ('press("+")', WebAction("press", text="+")),  # the plus key itself
        ('press("shift++")', WebAction("press", text="Shift++")),
        ('type(3, "The "best" lamp")', WebAction("type", element=3, text='The "best" lamp')),  # as models write it
        ('Action: type(2, "say "hi"")', WebAction("type", element=2, text='say "hi"')),
        ("I should click (the blue Submit button) now: click(5)", WebAction("click", element=5)),  # a later call
        ('Now I will type (the username) into field 4.\ntype(4, "bob")', WebAction("type", element=4, text="bob")),
        ("wait\nClick(5)", WebAction("wait")),  # the first in the text, whatever its case
        ("Action:\nclick(5)", WebAction("click", element=5)),  # the action on the line after `Action:`
        ("drag(3, 7)", WebAction("drag", element=3, target=7)),
        ('drag([3], "7")', WebAction("drag", element=3, target=7)),  # ids in every accepted form
        ("drag('12',[4])", WebAction("drag", element=12, target=4)),
        ("Action: DRAG( [2] , 9 )", WebAction("drag", element=2, target=9)),
        ("I will drag (the card) to the bin: drag(5, 6)", WebAction("drag", element=5, target=6)),
    ],
)
def test_valid_actions_parse(text: str, expected: WebAction) -> None:
    assert parse_web_action(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("hello there", "no action found"),
        ("tap(3)", "'tap' is not an action"),
        ("click(the button)", "needs an element id"),
        ("click(²)", "needs an element id"),  # `isdigit` is true for '²', `int` refuses it
        ("scroll(²)", "needs an element id"),
        ("click(٣)", "needs an element id"),
        ("click(1234567890)", "needs an element id"),
        ("click(3, 4)", "takes 1 argument"),
        ("type(3, hello)", "needs its text in quotes"),
        ('type(3, "a" "b")', "needs its text in quotes, one string"),  # not the text `a" "b`
        ("hover(3, 4)", "takes 1 argument"),
        ('type(3, "unclosed)', "never closed"),
        ("click(3", "never closed"),
        ('press("Hyper+x")', "not a modifier"),
        ('press("Launch")', "not a key name"),
        ("wait(5)", "takes no arguments"),
        ("drag(3)", r"drag takes 2 arguments, got 1; write drag\(ID, ID\)"),
        ("drag(3, 4, 5)", "drag takes 2 arguments, got 3"),
        ("drag()", "drag takes 2 arguments, got 0"),
        ("drag(3, the bin)", "drag needs an element id"),
        ("drag(3, down)", "drag needs an element id"),  # a direction is not a place to drop on
        ('drag("card", 4)', "drag needs an element id"),
        ("when I am done I will stop", "no action found"),
        # an unreadable Action: line is the error; the call the reasoning mentions is not played
        ("Thought: I must not click(3) again.\nAction: press the Submit button [5]", "the line 'Action: press the"),
        ("Action: click(the button)\nclick(3)", "the line 'Action: click.* needs an element id"),
    ],
)
def test_invalid_actions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ActionParseError, match=message):
        parse_web_action(text)


def test_actions_print_back_in_the_grammar() -> None:
    for text in [
        'type(4, "say \\"hi\\"")',
        "click(3)",
        "hover(5)",
        "drag(3, 12)",
        'select(2, "A")',
        'press("Enter")',
        "scroll(down)",
        "wait",
    ]:
        action = parse_web_action(text)
        assert parse_web_action(str(action)) == action
    assert str(WebAction("drag", element=3, target=12)) == "drag(3, 12)"


def test_the_format_line_and_the_kinds_name_drag() -> None:
    assert "drag(ID, ID)" in actions.ACTION_FORMAT and "drag" in actions.ACTION_KINDS
    with pytest.raises(ActionParseError, match="actions: click, hover, drag, type"):
        parse_web_action("tap(3)")


def test_very_long_text_is_refused() -> None:
    with pytest.raises(ActionParseError, match="at most"):
        parse_web_action('type(1, "' + "x" * 5000 + '")')


def test_a_reply_with_several_actions_counts_those_not_played() -> None:
    assert parse_web_action("click(2)\nclick(3)\nwait").skipped == 2
    assert parse_web_action("Thinking about click(1)...\nAction: done").skipped == 0  # the Action: line alone
    assert parse_web_action('type(3, "click(4)\ndone")').skipped == 0  # calls inside the text are text


@pytest.mark.parametrize("text", ["click('" * 4000, 'type("' * 4000, "click(1) " * 4000])
def test_a_degenerate_reply_is_scanned_a_bounded_number_of_times(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call is a scan to its closing parenthesis: a looping reply must not make that once per call."""
    scans = []
    original = actions._arguments

    def counted(text: str, start: int) -> str | None:
        scans.append(start)
        return original(text, start)

    monkeypatch.setattr(actions, "_arguments", counted)
    with contextlib.suppress(ActionParseError):
        parse_web_action(text)
    assert len(scans) <= actions.MAX_CALLS
