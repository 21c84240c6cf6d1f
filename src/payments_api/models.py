"""Every table's model, imported in one place so alembic sees the whole schema."""

from payments_api.db import Base
from payments_api.users.models import User

__all__ = ["Base", "User"]
