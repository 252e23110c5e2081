"""The insight filter language, validated by pydantic and compiled to one SQL WHERE clause.

`{match: "all"|"any", conditions: [{kind, ...}]}` as openloomi's insight tabs save it. The
clause runs in the database over `insights` (never by loading rows into Python), so a tab over
thousands of chats costs one query. JSON arrays are searched with `json_each` on SQLite and
`jsonb_array_elements_text` / `jsonb_array_length` on PostgreSQL.

Kinds and what they match:
  importance, urgency  values among high|medium|low (openloomi's labels accepted: "Important",
                       "Immediate", "Within 24 hours", "Not urgent"…)
  platform             the insight's platform, case-insensitively
  account              the account id, or the account's display name or external id
  category             one of the insight's categories, case-insensitively
  people               a person in `people` contains the value (match any|all, caseSensitive)
  groups               the chat name contains the value, or the chat id equals it (match any|all)
  keyword              the value occurs in the chosen fields (title, description, details =
                       the texts of tasks and next actions, sources = platform and chat, groups, people,
                       insight_keywords = categories); all fields when none are given
  mentions_me          some message of the chat mentions the person (`mentions` not empty)
  time_window          the chat's newest message is within `withinHours` (1..720) of now
  has_tasks            any of the chosen lists is not empty (myTasks, waitingForMe,
                       waitingForOthers by default; nextActions too when asked)
Case-insensitive matching lowers both sides; SQLite's lower() folds ASCII letters only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.sql.elements import ColumnElement

from store.schema import accounts, insights

HOUR_MS = 3_600_000

Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Match = Literal["all", "any"]

_IMPORTANCE = {"high": "high", "important": "high", "medium": "medium", "general": "medium", "low": "low",
               "not important": "low"}
_URGENCY = {"high": "high", "immediate": "high", "urgent": "high", "asap": "high", "as soon as possible": "high",
            "medium": "medium", "within 24 hours": "medium", "24h": "medium", "24 hours": "medium", "low": "low",
            "not urgent": "low"}


def _levels(table: dict[str, str]) -> Any:
    """Checks the values name a level; they are stored as given and mapped when compiled."""

    def check(values: list[str]) -> list[str]:
        for value in values:
            if value.lower() not in table:
                raise ValueError(f"unknown value {value!r}: use high, medium or low")
        return values

    return AfterValidator(check)


def _lower(values: list[str]) -> list[str]:
    return sorted({value.lower() for value in values})


class _Condition(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Importance(_Condition):
    kind: Literal["importance"]
    values: Annotated[list[Token], Field(min_length=1, max_length=6), _levels(_IMPORTANCE)]


class Urgency(_Condition):
    kind: Literal["urgency"]
    values: Annotated[list[Token], Field(min_length=1, max_length=6), _levels(_URGENCY)]


class Platform(_Condition):
    kind: Literal["platform"]
    values: Annotated[list[Token], Field(min_length=1, max_length=12)]


class Account(_Condition):
    kind: Literal["account"]
    values: Annotated[list[Token], Field(min_length=1, max_length=12)]


class Category(_Condition):
    kind: Literal["category"]
    values: Annotated[list[Token], Field(min_length=1, max_length=12)]


class People(_Condition):
    kind: Literal["people"]
    values: Annotated[list[Token], Field(min_length=1, max_length=16)]
    match: Match = "any"
    case_sensitive: bool = Field(default=False, alias="caseSensitive")


class Groups(_Condition):
    kind: Literal["groups"]
    values: Annotated[list[Token], Field(min_length=1, max_length=16)]
    match: Match = "any"


KeywordField = Literal["title", "description", "details", "sources", "groups", "insight_keywords", "people"]


class Keyword(_Condition):
    kind: Literal["keyword"]
    values: Annotated[list[Token], Field(min_length=1, max_length=10)]
    match: Match = "any"
    fields: Annotated[list[KeywordField], Field(max_length=7)] | None = None


class MentionsMe(_Condition):
    kind: Literal["mentions_me"]
    values: Annotated[list[str], Field(max_length=0)] = []


class TimeWindow(_Condition):
    kind: Literal["time_window"]
    within_hours: int = Field(alias="withinHours", ge=1, le=24 * 30)


TaskList = Literal["myTasks", "waitingForMe", "waitingForOthers", "nextActions"]


class HasTasks(_Condition):
    kind: Literal["has_tasks"]
    values: Annotated[list[TaskList], Field(min_length=1, max_length=4)] = ["myTasks", "waitingForMe", "waitingForOthers"]


Condition = Annotated[
    Union[Importance, Urgency, Platform, Account, Category, People, Groups, Keyword, MentionsMe, TimeWindow, HasTasks],
    Field(discriminator="kind"),
]
KINDS = ("importance", "urgency", "platform", "account", "category", "people", "groups", "keyword", "mentions_me",
         "time_window", "has_tasks")


class InsightFilter(BaseModel):
    """A saved filter; what `insight_tabs.filter` stores (as `dump()` gives it)."""

    model_config = ConfigDict(extra="ignore")
    match: Match = "all"
    conditions: Annotated[list[Condition], Field(min_length=1, max_length=12)]

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --- compiling to SQL -------------------------------------------------------------------------

_TASK_LISTS = (insights.c.my_tasks, insights.c.waiting_for_me, insights.c.waiting_for_others)
_TASK_COLUMNS = {
    "myTasks": insights.c.my_tasks,
    "waitingForMe": insights.c.waiting_for_me,
    "waitingForOthers": insights.c.waiting_for_others,
    "nextActions": insights.c.next_actions,
}


class _Sql:
    """Dialect-specific pieces: the only place SQLite and PostgreSQL differ."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def elements(self, column: Any) -> Any:
        fn = sa.func.jsonb_array_elements_text(column) if self.pg else sa.func.json_each(column)
        return fn.table_valued("value").alias()

    def any_element(self, column: Any, predicate: Any) -> ColumnElement[bool]:
        elems = self.elements(column)
        return sa.exists(sa.select(sa.literal(1)).select_from(elems).where(predicate(elems.c.value)))

    def any_task_text(self, column: Any, predicate: Any) -> ColumnElement[bool]:
        """Some task ({text, sourceMessageIds, due}) in a list column has a text matching."""
        if self.pg:
            elems = sa.func.jsonb_array_elements(column).table_valued("value").alias()
            text = elems.c.value.op("->>")(sa.literal("text", sa.Text))
        else:
            elems = sa.func.json_each(column).table_valued("value").alias()
            text = sa.func.json_extract(elems.c.value, "$.text")
        return sa.exists(sa.select(sa.literal(1)).select_from(elems).where(predicate(text)))

    def length(self, column: Any) -> Any:
        return sa.func.jsonb_array_length(column) if self.pg else sa.func.json_array_length(column)

    def contains(self, text: Any, token: str, case_sensitive: bool = False) -> ColumnElement[bool]:
        if not case_sensitive:
            text, token = sa.func.lower(text), token.lower()
        position = sa.func.strpos if self.pg else sa.func.instr
        return position(text, sa.literal(token, sa.Text)) > 0


def _combine(match: str, parts: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    return sa.and_(*parts) if match == "all" else sa.or_(*parts)


def _keyword_token(sql: _Sql, fields: list[str], token: str) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    for field in fields:
        if field == "title":
            parts.append(sql.contains(insights.c.title, token))
        elif field == "description":
            parts.append(sql.contains(insights.c.description, token))
        elif field == "groups":
            parts.append(sql.contains(sa.func.coalesce(insights.c.chat_name, ""), token))
        elif field == "people":
            parts.append(sql.any_element(insights.c.people, lambda v: sql.contains(v, token)))
        elif field == "insight_keywords":
            parts.append(sql.any_element(insights.c.categories, lambda v: sql.contains(v, token)))
        elif field == "details":
            parts.extend(sql.any_task_text(col, lambda v: sql.contains(v, token)) for col in _TASK_LISTS)
            parts.append(sql.any_element(insights.c.next_actions, lambda v: sql.contains(v, token)))
        elif field == "sources":
            parts.append(sql.contains(insights.c.platform, token))
            parts.append(sql.contains(sa.func.coalesce(insights.c.chat_name, ""), token))
    return sa.or_(*parts)


def _condition(sql: _Sql, cond: Any, now_ms: int) -> ColumnElement[bool]:
    if isinstance(cond, Importance):
        return sa.func.lower(insights.c.importance).in_(sorted({_IMPORTANCE[v.lower()] for v in cond.values}))
    if isinstance(cond, Urgency):
        return sa.func.lower(insights.c.urgency).in_(sorted({_URGENCY[v.lower()] for v in cond.values}))
    if isinstance(cond, Platform):
        return sa.func.lower(insights.c.platform).in_(_lower(cond.values))
    if isinstance(cond, Account):
        named = sa.exists(
            sa.select(sa.literal(1)).where(
                accounts.c.id == insights.c.account_id,
                accounts.c.user_id == insights.c.user_id,
                sa.or_(sa.func.lower(accounts.c.name).in_(_lower(cond.values)), accounts.c.external_id.in_(cond.values)),
            )
        )
        return sa.or_(insights.c.account_id.in_(cond.values), named)
    if isinstance(cond, Category):
        return sql.any_element(insights.c.categories, lambda v: sa.func.lower(v).in_(_lower(cond.values)))
    if isinstance(cond, People):
        return _combine(cond.match, [
            sql.any_element(insights.c.people, lambda v, t=token: sql.contains(v, t, cond.case_sensitive))
            for token in cond.values
        ])
    if isinstance(cond, Groups):
        return _combine(cond.match, [
            sa.or_(sql.contains(sa.func.coalesce(insights.c.chat_name, ""), token), insights.c.chat_id == token)
            for token in cond.values
        ])
    if isinstance(cond, Keyword):
        fields = list(cond.fields or KeywordField.__args__)  # type: ignore[attr-defined]
        return _combine(cond.match, [_keyword_token(sql, fields, token) for token in cond.values])
    if isinstance(cond, MentionsMe):
        return sql.length(insights.c.mentions) > 0
    if isinstance(cond, TimeWindow):
        return insights.c.as_of >= now_ms - cond.within_hours * HOUR_MS
    if isinstance(cond, HasTasks):
        return sa.or_(*(sql.length(_TASK_COLUMNS[name]) > 0 for name in cond.values))
    raise TypeError(f"unhandled condition {cond!r}")  # the union above is closed


def where(flt: InsightFilter, *, dialect: str, now_ms: int) -> ColumnElement[bool]:
    """The WHERE clause for `flt` over `insights`. The caller adds `insights.user_id == owner`."""
    sql = _Sql(dialect)
    return _combine(flt.match, [_condition(sql, cond, now_ms) for cond in flt.conditions])
