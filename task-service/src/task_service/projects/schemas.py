"""Request and response shapes of the projects API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from task_service.projects.models import ProjectRole
from task_service.tasks.schemas import UserId, no_nul

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(no_nul),
]
Description = Annotated[str, Field(max_length=10_000), AfterValidator(no_nul)]


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None


class ProjectUpdate(BaseModel):
    """Only the fields sent change; `description: null` clears it."""

    model_config = ConfigDict(extra="forbid")

    # SkipJsonSchema: absent is fine, null is not (a project always has a name).
    name: Name | SkipJsonSchema[None] = None
    description: Description | None = None

    @model_validator(mode="after")
    def _name_not_null(self) -> ProjectUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ProjectRead(BaseModel):
    id: int
    name: str
    description: str | None
    owner_id: int
    created_at: datetime
    updated_at: datetime
    version: int
    role: ProjectRole = Field(description="The caller's role in the project")
    member_count: int


class ProjectList(BaseModel):
    projects: list[ProjectRead]


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    role: Literal["member", "admin"] = "member"


class MemberRead(BaseModel):
    user_id: int
    username: str | None = Field(description="From the user directory; null until it knows them")
    role: ProjectRole
    added_at: datetime


class MemberList(BaseModel):
    members: list[MemberRead]
