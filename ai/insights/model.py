"""The shapes insights are made of: a chat's messages as the methods read them, and the draft
a method produces (pydantic, so an LLM's answer is validated against the same model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["high", "medium", "low"]
DEFAULT_CATEGORIES = (
    "News", "Meetings", "Funding", "R&D", "Partnerships", "User Growth", "Branding", "Marketing", "HR & Recruiting",
)
OTHER = "Other"


@dataclass(frozen=True)
class Msg:
    id: str  # our message id (what GET /api/messages returns)
    native_id: str
    sender_id: str | None
    sender_name: str | None
    is_self: bool
    text: str
    sent_at: int
    reply_to: str | None  # the platform id of the message this one answers
    seq: int = 0

    @property
    def who(self) -> str:
        return "me" if self.is_self else (self.sender_name or self.sender_id or "someone")


class Item(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    text: str = Field(min_length=1, max_length=500)
    source_message_ids: list[str] = Field(default_factory=list, alias="sourceMessageIds", max_length=50)
    due: int | None = None  # ms


class Draft(BaseModel):
    """One chat's insight before it is stored; field names as the API shows them."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=2000)
    importance: Level = "low"
    urgency: Level = "low"
    categories: list[str] = Field(default_factory=lambda: [OTHER], max_length=5)
    people: list[str] = Field(default_factory=list, max_length=50)
    my_tasks: list[Item] = Field(default_factory=list, alias="myTasks", max_length=30)
    waiting_for_me: list[Item] = Field(default_factory=list, alias="waitingForMe", max_length=30)
    waiting_for_others: list[Item] = Field(default_factory=list, alias="waitingForOthers", max_length=30)
    next_actions: list[str] = Field(default_factory=list, alias="nextActions", max_length=10)
    mentions: list[str] = Field(default_factory=list, max_length=500)
    is_unreplied: bool = Field(default=False, alias="isUnreplied")
    due_date: int | None = Field(default=None, alias="dueDate")
    source_message_ids: list[str] = Field(default_factory=list, alias="sourceMessageIds", max_length=500)
