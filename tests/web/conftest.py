"""Web tests hash passwords with cheap Argon2 parameters (the default costs about 0.1 s a hash on a busy 2-core
machine, and these tests sign in hundreds of times); one test checks the production default."""
import pytest

from quota.store import users


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch, request):
    if "default_argon2" not in request.keywords:
        from tests.web.support import CHEAP_ARGON2
        monkeypatch.setattr(users, "ARGON2", CHEAP_ARGON2)
        monkeypatch.setattr(users, "_DUMMY", [])
