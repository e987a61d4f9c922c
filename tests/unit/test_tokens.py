"""Carnet access tokens: the cache of verified tokens never accepts what verification would refuse."""

from __future__ import annotations

import json

import pytest

from carnet.auth import tokens
from carnet.config import Environment, Settings
from carnet.errors import Unauthenticated
from tests.factories import signing_keys


def settings(keys: str, base_url: str = "http://carnet.test") -> Settings:
    return Settings(env=Environment.TEST, database_url="sqlite://", base_url=base_url, signing_keys=keys)


def test_a_verified_token_is_accepted_again_with_the_same_claims() -> None:
    s = settings(signing_keys("k-cache-1"))
    token = tokens.issue(s, "pro:810001", extra={"role": "x"}, ttl=600)
    first = tokens.verify(s, token)
    second = tokens.verify(s, token)
    assert first == second
    assert second["sub"] == "pro:810001"
    second["sub"] = "pro:tampered"  # callers get a copy: the cached claims cannot be changed through it
    assert tokens.verify(s, token)["sub"] == "pro:810001"


def test_an_expired_token_is_refused_even_after_it_was_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(signing_keys("k-cache-2"))
    token = tokens.issue(s, "pro:810002", ttl=60)
    issued = tokens.verify(s, token)
    later = issued["exp"] + 6  # past the 5 s leeway
    monkeypatch.setattr("carnet.auth.tokens.time.time", lambda: later)
    with pytest.raises(Unauthenticated):
        tokens.verify(s, token)


def test_a_cached_token_is_refused_once_its_key_is_rotated_out() -> None:
    old, new = json.loads(signing_keys("k-old")), json.loads(signing_keys("k-new"))
    both = settings(json.dumps({"keys": new["keys"] + old["keys"]}))
    old_only = settings(json.dumps(old))
    token = tokens.issue(old_only, "pro:810003", ttl=600)
    assert tokens.verify(old_only, token)["sub"] == "pro:810003"
    assert tokens.verify(both, token)["sub"] == "pro:810003"  # during the rotation: still valid
    with pytest.raises(Unauthenticated):
        tokens.verify(settings(json.dumps(new)), token)  # the old key removed: refused, cache or not


def test_a_cached_token_is_refused_by_another_issuer_or_where_dev_tokens_are_not_allowed() -> None:
    keys = signing_keys("k-cache-3")
    s = settings(keys)
    token = tokens.issue_dev(s, "pro:810004", ttl=600)
    assert tokens.verify(s, token)["dev"] is True
    with pytest.raises(Unauthenticated):
        tokens.verify(settings(keys, base_url="http://elsewhere.test"), token)
    production_like = s.model_copy(update={"env": Environment.STAGING})
    assert not production_like.allows_dev_tokens
    with pytest.raises(Unauthenticated):
        tokens.verify(production_like, token)
