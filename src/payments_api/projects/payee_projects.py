"""Finding a payee's project, and one of its sessions, from the public ids a payer sends
(a direct payment, a job offered in escrow)."""

from __future__ import annotations

from payments_api.kit.pagination import parse_public_id
from payments_api.projects.errors import ProjectNotFound, SessionNotFound
from payments_api.projects.models import Project, ProjectSession
from payments_api.projects.repository import ProjectRepository

PROJECT_PREFIX = "prj"
SESSION_PREFIX = "ses"


async def payee_project(
    projects: ProjectRepository, payee_id: str, project_id: str | None
) -> Project:
    """The payee's own project ``prj_…``; another payee's is answered like a missing
    one (its earnings are not the payer's to add to)."""
    number = parse_public_id(PROJECT_PREFIX, project_id or "")
    project = await projects.get(number) if number is not None else None
    if project is None or project.owner_id != payee_id:
        raise ProjectNotFound(f"The payee has no project {project_id!r}.")
    return project


async def project_session(
    projects: ProjectRepository, project: Project, session_id: str
) -> ProjectSession:
    """The project's session ``ses_…``, whatever its status."""
    number = parse_public_id(SESSION_PREFIX, session_id)
    window = await projects.get_session(project.id, number) if number is not None else None
    if window is None:
        raise SessionNotFound(f"The project has no session {session_id!r}.")
    return window
