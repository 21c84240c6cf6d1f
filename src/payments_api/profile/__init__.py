"""``GET /api/v1/me``: the calling user's profile.

Its own package rather than ``users/router.py``: ``deps`` loads the caller through
``users`` (models, repository), so a router inside ``users`` that depends on ``deps``
made the two packages import each other.
"""
