from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The user id (the JWT `sub`).", examples=["user_123"])
    roles: list[str] = Field(examples=[["customer"]])
    email: str | None = Field(examples=["ada@example.com"])
    frozen: bool = Field(description="A frozen wallet cannot withdraw.")
    created_at: datetime
