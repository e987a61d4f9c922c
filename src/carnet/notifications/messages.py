"""What a notice says, in French (default) or English: Jinja2 templates, dates formatted with Babel.

One template per language and kind (``templates/<lang>/<kind>.j2``) defines the blocks ``subject``,
``summary`` (what happened, one paragraph) and ``sms``; the layouts ``templates/<lang>/_email.txt`` and
``templates/_email.html`` wrap the summary into an e-mail. The in-app notification centre shows the
subject and the summary.

What a template receives is deliberately poor: the kind of recipient (the patient, a legal
representative, the médecin traitant), when it happened, a count, codes (emergency mode, consent kind,
created or revoked) and the portal link. Never a name, a document title or type, or anything medical:
the message says that something happened and where to look, and the person signs in to see what.
The one exception is the password-reset code (``Kind.RESET_CODE``), which carries the code itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

import babel.dates
import jinja2

from carnet.config import Settings
from carnet.notifications.kinds import Kind, Language, Role

DATE_FORMATS = {
    Language.FR: "d MMMM y 'à' HH'h'mm",
    Language.EN: "d MMMM y 'at' HH:mm",
}


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    summary: str
    text: str  # the e-mail's plain-text body
    html: str  # the e-mail's HTML alternative
    sms: str


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("carnet.notifications", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # templates ship with the package: no stat() per message
    )


@functools.cache
def _words(language: Language) -> Any:
    """The phrases shared by a language's templates (a module of macros, built once)."""
    return environment().get_template(f"{language.value}/_words.j2").module


def format_when(value: dt.datetime, language: Language, timezone: str) -> str:
    return babel.dates.format_datetime(
        value, DATE_FORMATS[language], tzinfo=zoneinfo.ZoneInfo(timezone), locale=language.value
    )


def format_day(value: object, language: Language, timezone: str) -> str | None:
    """A day (an ISO date-time in ``params``, such as when an announced record opens) as the recipient reads
    it: ``15 janvier 2027``, ``15 January 2027``; None when absent or unreadable."""
    try:
        moment = dt.datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    if moment is None:
        return None
    day = moment.astimezone(zoneinfo.ZoneInfo(timezone)).date() if moment.tzinfo else moment.date()
    return str(babel.dates.format_date(day, "d MMMM y", locale=language.value))


def _block(template: jinja2.Template, name: str, context: dict[str, Any]) -> str:
    text = "".join(template.blocks[name](template.new_context(context)))
    return re.sub(r"[ \t]*\n[ \t]*", "\n", text).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def count_for(params: dict[str, Any], role: Role) -> int:
    """How many documents a notice counts for this recipient (representatives may see fewer)."""
    count = params.get("count", 1)
    if role is Role.REPRESENTATIVE:
        count = params.get("count_representative", count)
    return int(count)


def render(
    settings: Settings,
    *,
    kind: Kind,
    language: Language,
    role: Role,
    occurred_at: dt.datetime,
    params: dict[str, Any],
) -> Message:
    """The message for one recipient of one event.

    A reset code's message needs the code in clear in ``params["code"]`` (``reset_code.reveal`` opens it
    from the sealed value the event stores); without it, ``ValueError``.
    """
    if kind is Kind.RESET_CODE and not params.get("code"):
        raise ValueError("a reset-code message is rendered with its code (reset_code.reveal)")
    env = environment()
    context: dict[str, Any] = {
        "w": _words(language),
        "kind": kind.value,
        "role": role.value,
        "actor": str(params.get("actor", "professional")),
        "when": format_when(occurred_at, language, settings.notify_timezone),
        "count": count_for(params, role),
        "mode": params.get("mode"),
        "consent": params.get("consent"),
        "change": params.get("change", "create"),
        "code": params.get("code"),  # a reset code, opened just for this rendering
        "minutes": int(params.get("minutes", 15)),
        "opens": format_day(params.get("opens"), language, settings.notify_timezone),  # an announced record
        "portal_url": settings.portal_url,
        "language": language.value,
    }
    template = env.get_template(f"{language.value}/{kind.value}.j2")
    subject = _one_line(_block(template, "subject", context))
    summary = _one_line(_block(template, "summary", context))
    sms = _one_line(_block(template, "sms", context))
    layout = env.get_template(f"{language.value}/_email.txt")
    framed = {**context, "subject": subject, "summary": summary}
    text = re.sub(r"\n{3,}", "\n\n", layout.render(framed)).strip() + "\n"
    html = env.get_template("_email.html").render(
        {
            **framed,
            "greeting": _one_line(_block(layout, "greeting", framed)),
            "link_label": _one_line(_block(layout, "link_label", framed)),
            "footer": [_one_line(p) for p in _block(layout, "footer", framed).split("\n\n") if p.strip()],
        }
    )
    return Message(subject=subject, summary=summary, text=text, html=html, sms=sms)
